// A CMP CA on Bouncy Castle's CMP classes (the implementation EJBCA builds on), for the tests
// and bench/ra.sh: p10cr -> cp (implicitConfirm when asked, else certConf -> pkiConf), rr -> rp,
// every message protected with the shared secret's PBM (SHA-256, HMAC-SHA256). Unlike OpenSSL's
// mock server it signs each CSR's key for the CSR's subjectAltName with the issuing CA it is
// given, so every order, renewal included, gets its own certificate.
//
//   java -cp CLASSPATH CmpCa PORT ISSUING_CERT_PEM ISSUING_KEY_PEM SECRET_FILE
//
// Listens on 127.0.0.1:PORT, path /pkix/. Its records are lines on stdout: "pbm N" (the
// iteration count of a request's MAC, once it verified), "issued SERIAL",
// "confirmed N" (a certConf
// of N statuses), "revoked SERIAL REASON" (serials in lowercase hex). Nothing persists.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.FileReader;
import java.io.IOException;
import java.io.OutputStream;
import java.math.BigInteger;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.SecureRandom;
import java.security.Security;
import java.util.Date;
import java.util.concurrent.Executors;
import org.bouncycastle.asn1.ASN1Integer;
import org.bouncycastle.asn1.DERNull;
import org.bouncycastle.asn1.cmp.CMPCertificate;
import org.bouncycastle.asn1.cmp.CMPObjectIdentifiers;
import org.bouncycastle.asn1.cmp.CertConfirmContent;
import org.bouncycastle.asn1.cmp.RevDetails;
import org.bouncycastle.asn1.cmp.RevRepContentBuilder;
import org.bouncycastle.asn1.cmp.RevReqContent;
import org.bouncycastle.asn1.crmf.CertId;
import org.bouncycastle.asn1.x509.CRLReason;
import org.bouncycastle.asn1.cmp.CertOrEncCert;
import org.bouncycastle.asn1.cmp.CertRepMessage;
import org.bouncycastle.asn1.cmp.CertResponse;
import org.bouncycastle.asn1.cmp.CertifiedKeyPair;
import org.bouncycastle.asn1.cmp.ErrorMsgContent;
import org.bouncycastle.asn1.cmp.InfoTypeAndValue;
import org.bouncycastle.asn1.cmp.PKIBody;
import org.bouncycastle.asn1.cmp.PKIFailureInfo;
import org.bouncycastle.asn1.cmp.PKIFreeText;
import org.bouncycastle.asn1.cmp.PKIHeader;
import org.bouncycastle.asn1.cmp.PKIStatus;
import org.bouncycastle.asn1.cmp.PKIStatusInfo;
import org.bouncycastle.asn1.cmp.PBMParameter;
import org.bouncycastle.asn1.nist.NISTObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.Attribute;
import org.bouncycastle.asn1.pkcs.CertificationRequest;
import org.bouncycastle.asn1.pkcs.PKCSObjectIdentifiers;
import org.bouncycastle.asn1.pkcs.PrivateKeyInfo;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.AlgorithmIdentifier;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.Extensions;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.cmp.GeneralPKIMessage;
import org.bouncycastle.cert.cmp.ProtectedPKIMessage;
import org.bouncycastle.cert.cmp.ProtectedPKIMessageBuilder;
import org.bouncycastle.cert.crmf.PKMACBuilder;
import org.bouncycastle.cert.crmf.jcajce.JcePKMACValuesCalculator;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.openssl.PEMKeyPair;
import org.bouncycastle.openssl.PEMParser;
import org.bouncycastle.openssl.jcajce.JcaPEMKeyConverter;
import org.bouncycastle.operator.ContentSigner;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaContentVerifierProviderBuilder;
import org.bouncycastle.pkcs.PKCS10CertificationRequest;

public final class CmpCa {
    private static final SecureRandom RANDOM = new SecureRandom();
    /** Serial -> revoked. */
    private static final java.util.concurrent.ConcurrentHashMap<BigInteger, Boolean> ISSUED =
            new java.util.concurrent.ConcurrentHashMap<>();
    private static final long VALIDITY_MS = 7L * 24 * 3600 * 1000;

    private final X509CertificateHolder issuing;
    private final PrivateKey issuingKey;
    private final char[] secret;
    private final JcaX509ExtensionUtils extUtils;

    private CmpCa(X509CertificateHolder issuing, PrivateKey issuingKey, char[] secret)
            throws Exception {
        this.issuing = issuing;
        this.issuingKey = issuingKey;
        this.secret = secret;
        this.extUtils = new JcaX509ExtensionUtils();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: CmpCa PORT ISSUING_CERT_PEM ISSUING_KEY_PEM SECRET_FILE");
            System.exit(2);
        }
        Security.addProvider(new BouncyCastleProvider());
        X509CertificateHolder cert;
        try (PEMParser p = new PEMParser(new FileReader(args[1], StandardCharsets.US_ASCII))) {
            cert = (X509CertificateHolder) p.readObject();
        }
        PrivateKey key;
        try (PEMParser p = new PEMParser(new FileReader(args[2], StandardCharsets.US_ASCII))) {
            Object o = p.readObject();
            PrivateKeyInfo info = o instanceof PEMKeyPair kp ? kp.getPrivateKeyInfo() : (PrivateKeyInfo) o;
            key = new JcaPEMKeyConverter().setProvider("BC").getPrivateKey(info);
        }
        String secret = Files.readString(Path.of(args[3]), StandardCharsets.UTF_8).strip();
        CmpCa ca = new CmpCa(cert, key, secret.toCharArray());
        HttpServer server = HttpServer.create(
                new InetSocketAddress("127.0.0.1", Integer.parseInt(args[0])), 256);
        server.createContext("/pkix/", ca::handle);
        server.setExecutor(Executors.newFixedThreadPool(8));
        server.start();
        System.err.println("CmpCa listening on 127.0.0.1:" + args[0]);
    }

    private void handle(HttpExchange ex) throws IOException {
        byte[] answer;
        int status = 200;
        try {
            answer = respond(ex.getRequestBody().readAllBytes());
        } catch (Exception e) {
            System.err.println("CmpCa: " + e);
            answer = new byte[0];
            status = 400;
        }
        ex.getResponseHeaders().set("Content-Type", "application/pkixcmp");
        ex.sendResponseHeaders(status, answer.length == 0 ? -1 : answer.length);
        if (answer.length > 0) {
            try (OutputStream out = ex.getResponseBody()) {
                out.write(answer);
            }
        }
        ex.close();
    }

    private byte[] respond(byte[] request) throws Exception {
        ProtectedPKIMessage msg = new ProtectedPKIMessage(new GeneralPKIMessage(request));
        if (!msg.hasPasswordBasedMacProtection()
                || !msg.verify(new PKMACBuilder(new JcePKMACValuesCalculator().setProvider("BC")), secret)) {
            throw new IllegalArgumentException("request protection does not verify");
        }
        PKIHeader h = msg.getHeader();
        record("pbm " + PBMParameter.getInstance(h.getProtectionAlg().getParameters())
                .getIterationCount().getValue());
        boolean implicit = false;
        if (h.getGeneralInfo() != null) {
            for (InfoTypeAndValue i : h.getGeneralInfo()) {
                implicit |= CMPObjectIdentifiers.it_implicitConfirm.equals(i.getInfoType());
            }
        }
        PKIBody body;
        switch (msg.getBody().getType()) {
            case PKIBody.TYPE_P10_CERT_REQ -> {
                PKCS10CertificationRequest csr = new PKCS10CertificationRequest(
                        (CertificationRequest) msg.getBody().getContent());
                body = issue(csr);
            }
            case PKIBody.TYPE_CERT_CONFIRM -> {
                implicit = false;
                int n = CertConfirmContent.getInstance(msg.getBody().getContent()).toCertStatusArray().length;
                record("confirmed " + n);
                body = new PKIBody(PKIBody.TYPE_CONFIRM, DERNull.INSTANCE);
            }
            case PKIBody.TYPE_REVOCATION_REQ -> {
                implicit = false;
                body = revoke(RevReqContent.getInstance(msg.getBody().getContent()));
            }
            default -> {
                implicit = false;
                body = error("unsupported body type " + msg.getBody().getType());
            }
        }
        if (body.getType() != PKIBody.TYPE_CERT_REP) {
            implicit = false;
        }
        byte[] nonce = new byte[16];
        RANDOM.nextBytes(nonce);
        ProtectedPKIMessageBuilder b = new ProtectedPKIMessageBuilder(
                h.getPvno().intValueExact(),
                new GeneralName(issuing.getSubject()),
                h.getSender())
                .setMessageTime(new Date())
                .setTransactionID(h.getTransactionID().getOctets())
                .setSenderNonce(nonce)
                .setRecipNonce(h.getSenderNonce().getOctets())
                .setBody(body)
                .addCMPCertificate(issuing);
        if (h.getSenderKID() != null) {
            b.setSenderKID(h.getSenderKID().getOctets());
        }
        if (implicit) {
            b.addGeneralInfo(new InfoTypeAndValue(CMPObjectIdentifiers.it_implicitConfirm, DERNull.INSTANCE));
        }
        byte[] salt = new byte[16];
        RANDOM.nextBytes(salt);
        PKMACBuilder mac = new PKMACBuilder(new JcePKMACValuesCalculator().setProvider("BC"))
                .setParameters(new PBMParameter(salt,
                        new AlgorithmIdentifier(NISTObjectIdentifiers.id_sha256), 1000,
                        new AlgorithmIdentifier(PKCSObjectIdentifiers.id_hmacWithSHA256, DERNull.INSTANCE)));
        return b.build(mac.build(secret)).toASN1Structure().getEncoded();
    }

    private PKIBody issue(PKCS10CertificationRequest csr) throws Exception {
        if (!csr.isSignatureValid(new JcaContentVerifierProviderBuilder().setProvider("BC")
                .build(csr.getSubjectPublicKeyInfo()))) {
            return error("the CSR's signature does not verify");
        }
        GeneralNames san = null;
        for (Attribute a : csr.getAttributes(PKCSObjectIdentifiers.pkcs_9_at_extensionRequest)) {
            san = GeneralNames.fromExtensions(
                    Extensions.getInstance(a.getAttrValues().getObjectAt(0)),
                    Extension.subjectAlternativeName);
        }
        if (san == null) {
            return error("the CSR has no subjectAltName");
        }
        byte[] serial = new byte[16];
        RANDOM.nextBytes(serial);
        serial[0] = (byte) ((serial[0] & 0x7f) | 0x01);
        long now = System.currentTimeMillis();
        X509v3CertificateBuilder cert = new X509v3CertificateBuilder(
                issuing.getSubject(), new BigInteger(serial), new Date(now - 30_000),
                new Date(now + VALIDITY_MS), new X500Name(""), csr.getSubjectPublicKeyInfo())
                .addExtension(Extension.basicConstraints, true, new BasicConstraints(false))
                .addExtension(Extension.keyUsage, true, new KeyUsage(KeyUsage.digitalSignature))
                .addExtension(Extension.extendedKeyUsage, false, new ExtendedKeyUsage(KeyPurposeId.id_kp_serverAuth))
                .addExtension(Extension.subjectAlternativeName, true, san)
                .addExtension(Extension.authorityKeyIdentifier, false,
                        extUtils.createAuthorityKeyIdentifier(issuing.getSubjectPublicKeyInfo()))
                .addExtension(Extension.subjectKeyIdentifier, false,
                        extUtils.createSubjectKeyIdentifier(csr.getSubjectPublicKeyInfo()));
        ContentSigner signer = new JcaContentSignerBuilder("SHA256withECDSA").setProvider("BC").build(issuingKey);
        X509CertificateHolder issued = cert.build(signer);
        ISSUED.put(issued.getSerialNumber(), Boolean.FALSE);
        record("issued " + issued.getSerialNumber().toString(16));
        CertResponse response = new CertResponse(
                new ASN1Integer(-1),
                new PKIStatusInfo(PKIStatus.granted),
                new CertifiedKeyPair(new CertOrEncCert(new CMPCertificate(issued.toASN1Structure()))),
                null);
        return new PKIBody(PKIBody.TYPE_CERT_REP, new CertRepMessage(null, new CertResponse[] {response}));
    }

    private PKIBody revoke(RevReqContent rr) {
        RevRepContentBuilder rep = new RevRepContentBuilder();
        for (RevDetails d : rr.toRevDetailsArray()) {
            BigInteger serial = d.getCertDetails().getSerialNumber().getValue();
            Boolean revoked = ISSUED.get(serial);
            if (revoked == null) {
                rep.add(new PKIStatusInfo(PKIStatus.rejection, new PKIFreeText("unknown certificate"),
                        new PKIFailureInfo(PKIFailureInfo.badCertId)));
            } else if (revoked) {
                rep.add(new PKIStatusInfo(PKIStatus.rejection, new PKIFreeText("already revoked"),
                        new PKIFailureInfo(PKIFailureInfo.certRevoked)));
            } else {
                ISSUED.put(serial, Boolean.TRUE);
                String reason = "unspecified";
                Extensions ext = d.getCrlEntryDetails();
                if (ext != null && ext.getExtension(Extension.reasonCode) != null) {
                    reason = CRLReason.getInstance(ext.getExtension(Extension.reasonCode).getParsedValue())
                            .getValue().toString();
                }
                record("revoked " + serial.toString(16) + " " + reason);
                rep.add(new PKIStatusInfo(PKIStatus.granted),
                        new CertId(new GeneralName(issuing.getSubject()), serial));
            }
        }
        return new PKIBody(PKIBody.TYPE_REVOCATION_REP, rep.build());
    }

    private static synchronized void record(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static PKIBody error(String why) {
        return new PKIBody(PKIBody.TYPE_ERROR, new ErrorMsgContent(new PKIStatusInfo(
                PKIStatus.rejection, new PKIFreeText(why), new PKIFailureInfo(PKIFailureInfo.badRequest))));
    }
}
