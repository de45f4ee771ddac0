import java.io.IOException;
import java.io.StringWriter;
import java.net.URI;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyPair;
import java.security.Security;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.List;

import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.shredzone.acme4j.AccountBuilder;
import org.shredzone.acme4j.Authorization;
import org.shredzone.acme4j.Certificate;
import org.shredzone.acme4j.Login;
import org.shredzone.acme4j.Metadata;
import org.shredzone.acme4j.Order;
import org.shredzone.acme4j.Session;
import org.shredzone.acme4j.Status;
import org.shredzone.acme4j.challenge.Http01Challenge;
import org.shredzone.acme4j.exception.AcmeException;
import org.shredzone.acme4j.exception.AcmeServerException;
import org.shredzone.acme4j.toolbox.AcmeUtils;
import org.shredzone.acme4j.util.CSRBuilder;
import org.shredzone.acme4j.util.KeyPairUtils;

/**
 * An RFC 8739 (STAR) series through acme4j's API, for sceau-interop's tests/acme4j.rs: register
 * an account, order a STAR series for one name (allow-certificate-get asked for), answer
 * http-01 by writing the key authorization into a webroot, finalize with a CSR made here, fetch
 * the rolling certificate (POST-as-GET and unauthenticated GET) until the server has renewed
 * it, cancel the series, and record what the server answers afterwards.
 *
 * <p>Usage: {@code StarClient DIRECTORY_URL WEBROOT HOST LIFETIME_S SPAN_S OUT_DIR}. Writes
 * {@code cert1.pem}, {@code cert2.pem} (leaf and chain, as downloaded), {@code get.pem} (the
 * unauthenticated GET) and {@code key.pem} (the CSR's public key) into OUT_DIR, and prints one
 * {@code key=value} record a line on stdout; exits non-zero on any failure. The server's TLS
 * root comes from the JVM's {@code javax.net.ssl.trustStore}.
 */
public final class StarClient {
    private static final Duration WAIT = Duration.ofSeconds(30);

    private static void say(String key, Object value) {
        System.out.println(key + "=" + value);
        System.out.flush();
    }

    private static void writePem(Path file, List<X509Certificate> chain) throws Exception {
        var out = new StringWriter();
        for (var c : chain) {
            AcmeUtils.writeToPem(c.getEncoded(), AcmeUtils.PemLabel.CERTIFICATE, out);
        }
        Files.writeString(file, out.toString());
    }

    /** The problem type of what {@code action} throws, or "none" if it succeeds. */
    private static String problemOf(Action action) throws Exception {
        try {
            action.run();
            return "none";
        } catch (AcmeServerException ex) {
            return ex.getType().toString();
        } catch (AcmeException ex) {
            return ex.getClass().getSimpleName() + ": " + ex.getMessage();
        }
    }

    private interface Action {
        void run() throws Exception;
    }

    /** The series' current certificate, by an authenticated POST-as-GET (a fresh download). */
    private static Certificate download(Login login, URL url) throws AcmeException {
        var cert = login.bindCertificate(url);
        cert.download();
        return cert;
    }

    /** The series' current certificate by an unauthenticated GET (RFC 8739 §3.4). */
    private static List<X509Certificate> unauthenticatedGet(Session session, URL url)
            throws AcmeException {
        try (var conn = session.connect()) {
            conn.sendRequest(url, session, null);
            return conn.readCertificates();
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: StarClient DIRECTORY_URL WEBROOT HOST LIFETIME_S SPAN_S OUT_DIR");
            System.exit(2);
        }
        Security.addProvider(new BouncyCastleProvider());
        var directory = URI.create(args[0]);
        var webroot = Path.of(args[1]);
        var host = args[2];
        var lifetime = Duration.ofSeconds(Long.parseLong(args[3]));
        var span = Long.parseLong(args[4]);
        var out = Path.of(args[5]);

        var session = new Session(directory);
        Metadata meta = session.getMetadata();
        say("meta.auto-renewal", meta.isAutoRenewalEnabled());
        say("meta.min-lifetime", meta.getAutoRenewalMinLifetime().getSeconds());
        say("meta.max-duration", meta.getAutoRenewalMaxDuration().getSeconds());
        say("meta.allow-certificate-get", meta.isAutoRenewalGetAllowed());
        say("meta.external-account-required", meta.isExternalAccountRequired());

        Login login = new AccountBuilder()
                .agreeToTermsOfService()
                .useKeyPair(KeyPairUtils.createECKeyPair("secp256r1"))
                .createLogin(session);
        say("account", login.getAccount().getLocation());

        // acme4j (4.0.0 .. 5.1.0) sends end-date only when a start-date is set
        // (OrderBuilder.create tests autoRenewalStart twice), and RFC 8739 §3.1.1 requires
        // end-date: so the series starts now, explicitly.
        var start = Instant.now().truncatedTo(ChronoUnit.SECONDS);
        var end = start.plusSeconds(span);
        Order order = login.newOrder()
                .domain(host)
                .autoRenewal()
                .autoRenewalStart(start)
                .autoRenewalEnd(end)
                .autoRenewalLifetime(lifetime)
                .autoRenewalEnableGet()
                .create();
        say("order.url", order.getLocation());
        say("order.start", start.getEpochSecond());
        say("order.end", end.getEpochSecond());
        say("order.created-status", order.getStatus());

        for (Authorization auth : order.getAuthorizations()) {
            if (auth.getStatus() == Status.VALID) {
                continue;
            }
            Http01Challenge ch = auth.findChallenge(Http01Challenge.class)
                    .orElseThrow(() -> new IllegalStateException("no http-01 challenge offered"));
            Files.writeString(webroot.resolve(ch.getToken()), ch.getAuthorization());
            ch.trigger();
            var status = auth.waitForCompletion(WAIT);
            Files.deleteIfExists(webroot.resolve(ch.getToken()));
            if (status != Status.VALID) {
                throw new IllegalStateException("authorization " + auth.getLocation() + " is "
                        + status + ": " + ch.getError().map(Object::toString).orElse("?"));
            }
        }
        say("order.ready-status", order.waitUntilReady(WAIT));

        KeyPair domainKey = KeyPairUtils.createECKeyPair("secp256r1");
        var csr = new CSRBuilder();
        csr.addDomain(host);
        csr.sign(domainKey);
        var keyPem = new StringWriter();
        KeyPairUtils.writePublicKey(domainKey.getPublic(), keyPem);
        Files.writeString(out.resolve("key.pem"), keyPem.toString());
        order.execute(csr.getEncoded());
        say("order.status", order.waitForCompletion(WAIT));
        say("order.auto-renewing", order.isAutoRenewing());
        say("order.auto-renewal-certificate", order.isAutoRenewalCertificate());
        say("order.lifetime", order.getAutoRenewalLifetime().getSeconds());
        say("order.lifetime-adjust",
                order.getAutoRenewalLifetimeAdjust().map(Duration::getSeconds).orElse(-1L));
        say("order.start-date",
                order.getAutoRenewalStartDate().map(Instant::getEpochSecond).orElse(-1L));
        say("order.end-date", order.getAutoRenewalEndDate().getEpochSecond());
        say("order.allow-certificate-get", order.isAutoRenewalGetEnabled());

        URL starUrl = order.getCertificate().getLocation();
        say("star-certificate", starUrl);

        Certificate first = download(login, starUrl);
        writePem(out.resolve("cert1.pem"), first.getCertificateChain());
        X509Certificate c1 = first.getCertificate();
        say("cert1.serial", c1.getSerialNumber().toString(16));
        say("cert1.fetched", Instant.now().getEpochSecond());

        List<X509Certificate> got = unauthenticatedGet(session, starUrl);
        writePem(out.resolve("get.pem"), got);
        say("get.serial", got.get(0).getSerialNumber().toString(16));

        // The renewal: RFC 8739 §3.3 has the next certificate published before half of the
        // current one's lifetime; poll the rolling resource until the serial changes, giving up
        // a few seconds after the first one expired.
        var deadline = c1.getNotAfter().toInstant().plusSeconds(5);
        Certificate second;
        int polls = 0;
        while (true) {
            second = download(login, starUrl);
            polls++;
            if (!second.getCertificate().getSerialNumber().equals(c1.getSerialNumber())) {
                break;
            }
            if (Instant.now().isAfter(deadline)) {
                throw new IllegalStateException("no renewed certificate by " + deadline
                        + " (the first one expired at " + c1.getNotAfter().toInstant() + ")");
            }
            Thread.sleep(500);
        }
        writePem(out.resolve("cert2.pem"), second.getCertificateChain());
        say("cert2.serial", second.getCertificate().getSerialNumber().toString(16));
        say("cert2.fetched", Instant.now().getEpochSecond());
        say("cert2.polls", polls);
        order.fetch();
        say("order.status-renewed", order.getStatus());

        order.cancelAutoRenewal();
        say("cancel.status", order.getStatus());
        say("after-cancel.post-as-get", problemOf(() -> download(login, starUrl)));
        say("after-cancel.get", problemOf(() -> unauthenticatedGet(session, starUrl)));
        say("after-cancel.cancel-again", problemOf(order::cancelAutoRenewal));
        var fresh = login.bindOrder(order.getLocation());
        fresh.fetch();
        say("after-cancel.order-status", fresh.getStatus());
        say("done", true);
    }
}
