//! CA keys on a PKCS#11 token (an HSM, SoftHSM2 in tests), named by RFC 7512 `pkcs11:` URIs.
//!
//! Invariants:
//! - The PIN comes from the URI's `pin-value` or `pin-source` (a file), or from
//!   `SCEAU_PKCS11_PIN`; never from argv, and it is never printed ([`redacted_uri`]): every
//!   error names the URI without its PIN.
//! - The module comes from the URI's `module-path` or from `SCEAU_PKCS11_MODULE`.
//! - One PKCS#11 context per module per process, initialised (C_Initialize) on first use:
//!   PKCS#11 allows one C_Initialize per application, and SoftHSM2 crashes with two live
//!   contexts. A context made before a `fork` is refused in the child (the standard requires
//!   the child to initialise anew; only an exec'd child may use a token).
//! - Each opened key holds one logged-in session behind a mutex: signatures on one key are
//!   serialised, and block the calling thread (the signing process answers one request at a
//!   time). A session lost while running (token removed, module reset) is reopened once per
//!   signature; when the module itself lost its tokens it is finalised and initialised again
//!   first, under a write lock that no other use of the module holds, and sessions from before
//!   are never closed again (their handles may name new sessions). If the key cannot be
//!   reached, the signature fails with [`CaError::Unavailable`], which callers retry.
//! - A login is per process and token (PKCS#11: all sessions of an application share it):
//!   once a key on a token is open, another key opened on that token in this process does
//!   not check its own PIN again.
//! - Keys generated here are sensitive and not extractable (CKA_SENSITIVE true,
//!   CKA_EXTRACTABLE false): the private key never leaves the token. A label or id that is
//!   already on the token is refused, so a CA key is never overwritten or shadowed.
//! - Only the signing process (and the `ca` ceremony commands) open a token.

use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as awssig, UnparsedPublicKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, SignatureAlgorithm};

use crate::der;
use crate::{CaError, CaKey, CaKeyKind, KeyHandle, KeyRef};

/// Where the module path comes from when the URI has no `module-path`.
pub const MODULE_ENV: &str = "SCEAU_PKCS11_MODULE";
/// Where the PIN comes from when the URI has neither `pin-value` nor `pin-source`.
pub const PIN_ENV: &str = "SCEAU_PKCS11_PIN";

/// RFC 7512 §2.3 path attributes this implementation matches on; any other is refused rather
/// than ignored, so that a misspelt attribute cannot silently select another key.
const PATH_ATTRS: [&str; 8] = [
    "token",
    "manufacturer",
    "model",
    "serial",
    "slot-id",
    "object",
    "id",
    "type",
];
/// RFC 7512 §2.3 query attributes this implementation uses.
const QUERY_ATTRS: [&str; 3] = ["module-path", "pin-source", "pin-value"];

/// An RFC 7512 URI: path attributes (`token`, `object`, `id`, …) and query attributes
/// (`module-path`, `pin-source`, `pin-value`), percent-decoded. Values are bytes: `id` is a
/// CKA_ID, any byte string; every other attribute is checked to be UTF-8 text when parsed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pkcs11Uri {
    pub path: Vec<(String, Vec<u8>)>,
    pub query: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |attrs: &[(String, Vec<u8>)]| -> Vec<String> {
            attrs
                .iter()
                .map(|(k, v)| match k.as_str() {
                    "pin-value" => format!("{k}=***"),
                    "id" => format!("{k}={}", hex_id(v)),
                    _ => format!("{k}={}", String::from_utf8_lossy(v)),
                })
                .collect()
        };
        f.debug_struct("Pkcs11Uri")
            .field("path", &show(&self.path))
            .field("query", &show(&self.query))
            .finish()
    }
}

/// Percent-decoding (RFC 3986 §2.1, which RFC 7512 §2.3 uses for every value). The error
/// never repeats the value: it may be a PIN.
fn percent_decode(s: &str) -> Result<Vec<u8>, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated percent-encoding")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent-encoding")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

impl Pkcs11Uri {
    /// RFC 7512 §2.3: `pkcs11:` path-attributes separated by `;`, then `?` and query
    /// attributes separated by `&`.
    pub fn parse(uri: &str) -> Result<Pkcs11Uri, CaError> {
        let bad = |why: String| Pkcs11Error::new(uri, Fault::Uri(why));
        let rest = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("does not start with pkcs11:".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let attrs = |text: &str, sep: char| -> Result<Vec<(String, Vec<u8>)>, Pkcs11Error> {
            let mut out: Vec<(String, Vec<u8>)> = Vec::new();
            for a in text.split(sep).filter(|a| !a.is_empty()) {
                let name = a.split('=').next().unwrap_or("").to_ascii_lowercase();
                let (_, v) = a
                    .split_once('=')
                    .ok_or_else(|| bad(format!("attribute {name:?} has no value")))?;
                let value = percent_decode(v).map_err(|why| bad(format!("{name}: {why}")))?;
                // pk11-id is raw CKA_ID bytes; every other value is UTF-8 text (RFC 7512 §2.3).
                if name != "id" && std::str::from_utf8(&value).is_err() {
                    return Err(bad(format!("{name} is not UTF-8 once decoded")));
                }
                // RFC 7512 §2.3: an attribute may appear at most once in the path.
                if sep == ';' && out.iter().any(|(k, _)| *k == name) {
                    return Err(bad(format!("attribute {name} appears twice")));
                }
                out.push((name, value));
            }
            Ok(out)
        };
        Ok(Pkcs11Uri {
            path: attrs(path, ';')?,
            query: attrs(query, '&')?,
        })
    }

    /// A text attribute of the path (anything but `id`, whose bytes [`Self::path_bytes`] gives).
    pub fn path_attr(&self, name: &str) -> Option<&str> {
        self.path_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn path_bytes(&self, name: &str) -> Option<&[u8]> {
        self.path
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn query_attr(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// The URI without the value of `pin-value` (in the query, where RFC 7512 puts it, or in the
/// path, where someone may have put it by mistake), for messages and logs.
pub fn redacted_uri(uri: &str) -> String {
    let redact = |part: &str, sep: char| -> String {
        part.split(sep)
            .map(|a| {
                if a.to_ascii_lowercase().starts_with("pin-value=") {
                    "pin-value=***"
                } else {
                    a
                }
            })
            .collect::<Vec<_>>()
            .join(&sep.to_string())
    };
    match uri.split_once('?') {
        Some((path, query)) => format!("{}?{}", redact(path, ';'), redact(query, '&')),
        None => redact(uri, ';'),
    }
}

/// A PKCS#11 failure: which key (the URI, PIN redacted) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{uri}: {fault}")]
pub struct Pkcs11Error {
    uri: String,
    fault: Fault,
}

impl Pkcs11Error {
    fn new(uri: &str, fault: Fault) -> Pkcs11Error {
        Pkcs11Error {
            uri: redacted_uri(uri),
            fault,
        }
    }

    /// The URI, without PIN.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn fault(&self) -> &Fault {
        &self.fault
    }
}

/// What is wrong, one line each.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("not a usable PKCS#11 URI: {0}")]
    Uri(String),
    #[error("no PKCS#11 module: add module-path=/path/to/module.so to the URI or set {MODULE_ENV}")]
    NoModule,
    #[error("PKCS#11 module {} does not exist", .0.display())]
    ModuleMissing(PathBuf),
    #[error("PKCS#11 module {} cannot be loaded: {why}", path.display())]
    ModuleLoad { path: PathBuf, why: String },
    #[error(
        "the PKCS#11 module was initialised in process {parent}, before a fork; a child process must exec before it opens a token"
    )]
    Forked { parent: u32 },
    #[error(
        "no PIN: add pin-source=file:/path/to/pin to the URI or set {PIN_ENV} (never pass a PIN on the command line)"
    )]
    NoPin,
    #[error("cannot read the PIN file {}: {source}", path.display())]
    PinFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the PIN is empty ({0})")]
    EmptyPin(&'static str),
    #[error("pin-value and pin-source are both given; keep one")]
    TwoPins,
    #[error("wrong PIN (CKR_PIN_INCORRECT)")]
    WrongPin,
    #[error("the user PIN is locked (CKR_PIN_LOCKED); the security officer must unlock it")]
    PinLocked,
    #[error("no token matches{}", present_list(.present))]
    NoToken { present: Vec<String> },
    #[error("{count} tokens match{}; name one with token=", present_list(.present))]
    AmbiguousToken { count: usize, present: Vec<String> },
    #[error("names no key: give object=LABEL and/or id=BYTES")]
    NoKeyNamed,
    #[error("no private key {0} on the token")]
    NoKey(String),
    #[error("{count} private keys match {what}; add id= to choose one")]
    AmbiguousKey { count: usize, what: String },
    #[error("no public key object {0} beside the private key (needed for CKA_EC_POINT)")]
    NoPublicKey(String),
    #[error(
        "the public key object does not belong to the private key {0} (a test signature did not verify)"
    )]
    Mismatch(String),
    #[error("an object {0} is already on the token; a CA key is never overwritten")]
    Exists(String),
    #[error("unsupported key: {0}")]
    Unsupported(String),
    #[error("{op} failed: {rv}")]
    Token { op: &'static str, rv: String },
}

fn present_list(present: &[String]) -> String {
    if present.is_empty() {
        " (no token is present)".into()
    } else {
        format!(" (present: {})", present.join(", "))
    }
}

/// `CKR_PIN_INCORRECT` from cryptoki's `PinIncorrect`: the PKCS#11 name, which is what
/// operators search for.
fn ckr_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn token_fault(op: &'static str, e: CkError) -> Fault {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => Fault::WrongPin,
        CkError::Pkcs11(RvError::PinLocked, _) => Fault::PinLocked,
        CkError::Pkcs11(rv, _) => Fault::Token {
            op,
            rv: ckr_name(rv),
        },
        other => Fault::Token {
            op,
            rv: other.to_string(),
        },
    }
}

/// Errors after which a fresh session may succeed: the token went away and came back, or the
/// module lost our session or login.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid
                | RvError::DeviceError
                | RvError::CryptokiNotInitialized,
            _
        )
    )
}

/// Errors of a module that lost its tokens as a whole: SoftHSM2, for one, answers
/// CKR_GENERAL_ERROR to every C_GetSlotList once its token directory has gone, even after it
/// is back, until it is initialised again. (Names as [`ckr_name`] makes them.)
fn module_broken(f: &Fault) -> bool {
    match f {
        Fault::NoToken { .. } => true,
        Fault::Token { rv, .. } => matches!(
            rv.as_str(),
            "CKR_GENERAL_ERROR"
                | "CKR_DEVICE_ERROR"
                | "CKR_DEVICE_REMOVED"
                | "CKR_TOKEN_NOT_PRESENT"
                | "CKR_CRYPTOKI_NOT_INITIALIZED"
        ),
        _ => false,
    }
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

/// Which life of a module a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Life {
    number: u64,
    initialised: bool,
}

/// One loaded module. `life` is held for reading around every use of the module and for
/// writing while it is restarted (C_Finalize, C_Initialize), which PKCS#11 forbids while
/// other calls run; its number tells sessions opened before a restart, which C_Finalize
/// closed, from those opened after.
struct Module {
    ctx: Pkcs11,
    life: RwLock<Life>,
}

impl Module {
    fn read(&self) -> RwLockReadGuard<'_, Life> {
        self.life.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the module afresh, unless someone did since `seen`.
    fn restart(&self, seen: Life) {
        let mut life = self.life.write().unwrap_or_else(|p| p.into_inner());
        if life.number != seen.number {
            return;
        }
        if life.initialised {
            let _ = self.ctx.clone().finalize();
        }
        life.number += 1;
        life.initialised = matches!(
            self.ctx.initialize(init_args()),
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _))
        );
        tracing::warn!(
            restart = life.number,
            initialised = life.initialised,
            "PKCS#11 module restarted"
        );
    }
}

struct Loaded {
    path: PathBuf,
    pid: u32,
    module: Arc<Module>,
}

/// The process's PKCS#11 contexts, one per module (canonical path).
static MODULES: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; nothing is half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn module_context(uri: &str, path: &Path) -> Result<Arc<Module>, Pkcs11Error> {
    let fail = |f: Fault| Pkcs11Error::new(uri, f);
    if !path.exists() {
        return Err(fail(Fault::ModuleMissing(path.to_path_buf())));
    }
    let canonical = path.canonicalize().map_err(|e| {
        fail(Fault::ModuleLoad {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    })?;
    let mut modules = lock(&MODULES);
    if let Some(m) = modules.iter().find(|m| m.path == canonical) {
        if m.pid != std::process::id() {
            return Err(fail(Fault::Forked { parent: m.pid }));
        }
        return Ok(m.module.clone());
    }
    let ctx = Pkcs11::new(&canonical).map_err(|e| {
        fail(Fault::ModuleLoad {
            path: path.to_path_buf(),
            why: e.to_string(),
        })
    })?;
    match ctx.initialize(init_args()) {
        // Another library in this process initialised the same module: share it.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(token_fault("C_Initialize", e))),
    }
    let module = Arc::new(Module {
        ctx,
        life: RwLock::new(Life {
            number: 0,
            initialised: true,
        }),
    });
    modules.push(Loaded {
        path: canonical,
        pid: std::process::id(),
        module: module.clone(),
    });
    Ok(module)
}

/// Which token: the URI's token attributes, matched against every slot with a token.
#[derive(Debug, Clone, Default)]
struct TokenSpec {
    label: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    serial: Option<String>,
    slot_id: Option<u64>,
}

impl TokenSpec {
    fn find(&self, ctx: &Pkcs11) -> Result<Slot, Fault> {
        // Initialised tokens only: SoftHSM2 always offers one more, empty, slot.
        let slots = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| token_fault("C_GetSlotList", e))?;
        let mut present = Vec::new();
        let mut found = Vec::new();
        for slot in slots {
            let info = ctx
                .get_token_info(slot)
                .map_err(|e| token_fault("C_GetTokenInfo", e))?;
            // Token strings are blank-padded fixed-width fields (PKCS#11 CK_TOKEN_INFO).
            let label = info.label().trim_end().to_owned();
            let serial = info.serial_number().trim_end();
            let matches = self.label.as_deref().is_none_or(|l| l == label)
                && self
                    .manufacturer
                    .as_deref()
                    .is_none_or(|m| m == info.manufacturer_id().trim_end())
                && self
                    .model
                    .as_deref()
                    .is_none_or(|m| m == info.model().trim_end())
                && self.serial.as_deref().is_none_or(|s| s == serial)
                && self.slot_id.is_none_or(|id| id == slot.id());
            present.push(format!("{label:?} (serial {serial}, slot {})", slot.id()));
            if matches {
                found.push(slot);
            }
        }
        match found.len() {
            1 => Ok(found[0]),
            0 => Err(Fault::NoToken { present }),
            count => Err(Fault::AmbiguousToken { count, present }),
        }
    }
}

/// Which key object: CKA_LABEL and/or CKA_ID.
#[derive(Debug, Clone)]
struct KeySpec {
    label: Option<String>,
    id: Option<Vec<u8>>,
}

impl KeySpec {
    fn describe(&self) -> String {
        match (&self.label, &self.id) {
            (Some(l), Some(id)) => format!("labelled {l:?} with id {}", hex_id(id)),
            (Some(l), None) => format!("labelled {l:?}"),
            (None, Some(id)) => format!("with id {}", hex_id(id)),
            (None, None) => "(unnamed)".into(),
        }
    }

    fn template(&self, class: Option<ObjectClass>) -> Vec<Attribute> {
        let mut t = Vec::new();
        if let Some(c) = class {
            t.push(Attribute::Class(c));
        }
        if let Some(l) = &self.label {
            t.push(Attribute::Label(l.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            t.push(Attribute::Id(id.clone()));
        }
        t
    }
}

/// RFC 7512 percent-encodes an id; operators read it as hex (as pkcs11-tool prints it).
fn hex_id(id: &[u8]) -> String {
    if id.is_empty() {
        "(empty)".into()
    } else {
        crate::hex_lower(id)
    }
}

/// Everything needed to reach a key again: the opened URI, resolved.
struct Target {
    uri: String,
    module: Arc<Module>,
    token: TokenSpec,
    key: KeySpec,
    pin: AuthPin,
}

impl Target {
    fn resolve(uri: &str) -> Result<Target, Pkcs11Error> {
        let parsed = Pkcs11Uri::parse(uri).map_err(|e| match e {
            CaError::Pkcs11(e) => e,
            other => Pkcs11Error::new(uri, Fault::Uri(other.to_string())),
        })?;
        let fail = |f: Fault| Pkcs11Error::new(uri, f);
        for (k, _) in &parsed.path {
            if !PATH_ATTRS.contains(&k.as_str()) {
                return Err(fail(Fault::Uri(format!(
                    "path attribute {k} is not supported (use {})",
                    PATH_ATTRS.join(", ")
                ))));
            }
        }
        for (k, _) in &parsed.query {
            // Vendor-specific query attributes (x-…) belong to their vendors: not ours to refuse.
            if !QUERY_ATTRS.contains(&k.as_str()) && !k.starts_with("x-") {
                return Err(fail(Fault::Uri(format!(
                    "query attribute {k} is not supported (use {})",
                    QUERY_ATTRS.join(", ")
                ))));
            }
        }
        if let Some(t) = parsed.path_attr("type")
            && t != "private"
        {
            return Err(fail(Fault::Uri(format!(
                "type={t}: a CA key is a private key (type=private)"
            ))));
        }
        let key = KeySpec {
            label: parsed.path_attr("object").map(str::to_owned),
            id: parsed.path_bytes("id").map(<[u8]>::to_vec),
        };
        if key.label.is_none() && key.id.is_none() {
            return Err(fail(Fault::NoKeyNamed));
        }
        let slot_id = parsed
            .path_attr("slot-id")
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|_| fail(Fault::Uri(format!("slot-id {s:?} is not a number"))))
            })
            .transpose()?;
        let token = TokenSpec {
            label: parsed.path_attr("token").map(str::to_owned),
            manufacturer: parsed.path_attr("manufacturer").map(str::to_owned),
            model: parsed.path_attr("model").map(str::to_owned),
            serial: parsed.path_attr("serial").map(str::to_owned),
            slot_id,
        };
        let module = match parsed.query_attr("module-path") {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os(MODULE_ENV) {
                Some(p) if !p.is_empty() => PathBuf::from(p),
                _ => return Err(fail(Fault::NoModule)),
            },
        };
        let pin = read_pin(&parsed).map_err(fail)?;
        let module = module_context(uri, &module)?;
        Ok(Target {
            uri: uri.to_owned(),
            module,
            token,
            key,
            pin,
        })
    }

    fn fail(&self, f: Fault) -> Pkcs11Error {
        Pkcs11Error::new(&self.uri, f)
    }

    /// A logged-in session on the token; `life` is the caller's read guard on the module.
    fn login(&self, life: &Life, read_write: bool) -> Result<Session, Fault> {
        if !life.initialised {
            return Err(Fault::Token {
                op: "C_Initialize",
                rv: "CKR_CRYPTOKI_NOT_INITIALIZED".into(),
            });
        }
        let ctx = &self.module.ctx;
        let slot = self.token.find(ctx)?;
        let session = if read_write {
            ctx.open_rw_session(slot)
        } else {
            ctx.open_ro_session(slot)
        }
        .map_err(|e| token_fault("C_OpenSession", e))?;
        match session.login(UserType::User, Some(&self.pin)) {
            // Login is per application and token: another key of ours logged in already.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(token_fault("C_Login", e)),
        }
    }

    fn find_private(&self, session: &Session) -> Result<ObjectHandle, Fault> {
        let found = session
            .find_objects(&self.key.template(Some(ObjectClass::PRIVATE_KEY)))
            .map_err(|e| token_fault("C_FindObjects", e))?;
        match found.len() {
            1 => Ok(found[0]),
            0 => Err(Fault::NoKey(self.key.describe())),
            count => Err(Fault::AmbiguousKey {
                count,
                what: self.key.describe(),
            }),
        }
    }
}

/// RFC 7512 §2.3 `pin-value` (the PIN itself) or `pin-source` (where to read it: a `file:`
/// URI or a plain path), else [`PIN_ENV`].
fn read_pin(uri: &Pkcs11Uri) -> Result<AuthPin, Fault> {
    let value = uri.query_attr("pin-value");
    let source = uri.query_attr("pin-source");
    let pin = match (value, source) {
        (Some(_), Some(_)) => return Err(Fault::TwoPins),
        (Some(v), None) => {
            if v.is_empty() {
                return Err(Fault::EmptyPin("pin-value"));
            }
            v.to_owned()
        }
        (None, Some(src)) => {
            // file:///p and file:/p are RFC 8089 forms of the same path; a bare path too.
            let path = src
                .strip_prefix("file://")
                .or_else(|| src.strip_prefix("file:"))
                .unwrap_or(src);
            let path = PathBuf::from(path);
            let mut text = std::fs::read_to_string(&path).map_err(|source| Fault::PinFile {
                path: path.clone(),
                source,
            })?;
            // An editor's or `echo`'s final newline is not part of the PIN; anything else is.
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            if text.is_empty() {
                return Err(Fault::EmptyPin("the pin-source file"));
            }
            text
        }
        (None, None) => match std::env::var(PIN_ENV) {
            Ok(v) if !v.is_empty() => v,
            _ => return Err(Fault::NoPin),
        },
    };
    Ok(AuthPin::new(pin.into()))
}

/// CKM_ECDSA gives r‖s (PKCS#11 mechanisms, ECDSA); X.509 wants
/// Ecdsa-Sig-Value ::= SEQUENCE { r, s } (RFC 3279 §2.2.3).
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, Fault> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(Fault::Token {
            op: "C_Sign",
            rv: format!("an ECDSA signature of odd length {}", raw.len()),
        });
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut seq = der::uint(r);
    seq.extend(der::uint(s));
    Ok(der::tlv(0x30, &seq))
}

/// CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 EC public key objects;
/// SoftHSM2 does so); some tokens give the bare point. Either way the result is 04‖X‖Y.
fn unwrap_ec_point(value: &[u8], point_len: usize) -> Option<Vec<u8>> {
    if value.len() == point_len && value[0] == 0x04 {
        return Some(value.to_vec());
    }
    let (&tag, rest) = value.split_first()?;
    if tag != 0x04 {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, body) = match len0 {
        l if l < 0x80 => (l as usize, rest),
        0x81 => {
            let (&l, body) = rest.split_first()?;
            (l as usize, body)
        }
        _ => return None,
    };
    (len == point_len && body.len() == len && body[0] == 0x04).then(|| body.to_vec())
}

/// The key's shape, as it decides mechanisms and encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    P256,
    P384,
    Rsa,
}

impl Shape {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Shape::P256 => &PKCS_ECDSA_P256_SHA256,
            Shape::P384 => &PKCS_ECDSA_P384_SHA384,
            Shape::Rsa => &PKCS_RSA_SHA256,
        }
    }

    fn verify_alg(self) -> &'static dyn awssig::VerificationAlgorithm {
        match self {
            Shape::P256 => &awssig::ECDSA_P256_SHA256_ASN1,
            Shape::P384 => &awssig::ECDSA_P384_SHA384_ASN1,
            Shape::Rsa => &awssig::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

/// The private key's type and public key (subjectPublicKey BIT STRING contents).
fn read_public(
    session: &Session,
    private: ObjectHandle,
    spec: &KeySpec,
) -> Result<(Shape, Vec<u8>), Fault> {
    let attrs = session
        .get_attributes(
            private,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::Label,
                AttributeType::Id,
            ],
        )
        .map_err(|e| token_fault("C_GetAttributeValue", e))?;
    let mut key_type = None;
    let (mut params, mut modulus, mut exponent, mut label, mut id) = (None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(t),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::Modulus(n) => modulus = Some(n),
            Attribute::PublicExponent(e) => exponent = Some(e),
            Attribute::Label(l) => label = Some(l),
            Attribute::Id(i) => id = Some(i),
            _ => {}
        }
    }
    match key_type {
        Some(t) if t == KeyType::RSA => {
            let (Some(n), Some(e)) = (modulus, exponent) else {
                return Err(Fault::Unsupported(
                    "the RSA key shows no CKA_MODULUS/CKA_PUBLIC_EXPONENT".into(),
                ));
            };
            let bits = crate::keys::bit_len(&n);
            if bits != 3072 && bits != 4096 {
                return Err(Fault::Unsupported(format!(
                    "RSA {bits}: a CA key is p256, p384, rsa3072 or rsa4096"
                )));
            }
            // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1)
            let mut seq = der::uint(&n);
            seq.extend(der::uint(&e));
            Ok((Shape::Rsa, der::tlv(0x30, &seq)))
        }
        Some(t) if t == KeyType::EC => {
            let params = params.unwrap_or_default();
            let (shape, point_len) = if params == der::P256_OID {
                (Shape::P256, 65)
            } else if params == der::P384_OID {
                (Shape::P384, 97)
            } else {
                return Err(Fault::Unsupported(
                    "an EC key on a curve other than P-256 or P-384".into(),
                ));
            };
            // The private object has no CKA_EC_POINT: take it from the public key object with
            // the same label and id (how pkcs11-tool and generate_key pair them).
            let pair = KeySpec {
                label: label
                    .map(|l| String::from_utf8_lossy(&l).into_owned())
                    .or_else(|| spec.label.clone()),
                id: id.or_else(|| spec.id.clone()),
            };
            let publics = session
                .find_objects(&pair.template(Some(ObjectClass::PUBLIC_KEY)))
                .map_err(|e| token_fault("C_FindObjects", e))?;
            let [public] = publics[..] else {
                return Err(Fault::NoPublicKey(pair.describe()));
            };
            let point = session
                .get_attributes(public, &[AttributeType::EcPoint])
                .map_err(|e| token_fault("C_GetAttributeValue", e))?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(|| Fault::NoPublicKey(pair.describe()))?;
            let point = unwrap_ec_point(&point, point_len).ok_or_else(|| {
                Fault::Unsupported("CKA_EC_POINT is not an uncompressed point".into())
            })?;
            Ok((shape, point))
        }
        other => Err(Fault::Unsupported(format!(
            "key type {}",
            other.map_or_else(|| "unknown".into(), |t| t.to_string())
        ))),
    }
}

/// A logged-in session on the key, from one life of its module.
struct Live {
    /// Not closed on drop after a module restart: C_Finalize closed it, and its handle may
    /// since name another key's session.
    session: ManuallyDrop<Session>,
    key: ObjectHandle,
    always_authenticate: bool,
    life: u64,
    module: Arc<Module>,
}

impl Drop for Live {
    fn drop(&mut self) {
        let life = self.module.read();
        if life.initialised && life.number == self.life {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.session) };
        }
    }
}

/// A private key on a token, signing there.
struct TokenKey {
    target: Target,
    shape: Shape,
    public: Vec<u8>,
    live: Mutex<Option<Live>>,
}

/// What [`TokenKey::connect`] found.
struct Connected {
    live: Live,
    shape: Shape,
    public: Vec<u8>,
}

impl TokenKey {
    /// Logs in and finds the key; the caller holds `life`, a read guard on the module.
    fn connect(target: &Target, life: &Life, read_write: bool) -> Result<Connected, Fault> {
        let session = target.login(life, read_write)?;
        let key = target.find_private(&session)?;
        let (shape, public) = read_public(&session, key, &target.key)?;
        let always_authenticate = session
            .get_attributes(key, &[AttributeType::AlwaysAuthenticate])
            .map_err(|e| token_fault("C_GetAttributeValue", e))?
            .into_iter()
            .any(|a| matches!(a, Attribute::AlwaysAuthenticate(true)));
        Ok(Connected {
            live: Live {
                session: ManuallyDrop::new(session),
                key,
                always_authenticate,
                life: life.number,
                module: target.module.clone(),
            },
            shape,
            public,
        })
    }

    /// [`Self::connect`] under its own guard; a module that lost its tokens is restarted once.
    fn reconnect(target: &Target) -> Result<Connected, Fault> {
        let seen = {
            let life = target.module.read();
            match Self::connect(target, &life, false) {
                Ok(c) => return Ok(c),
                Err(f) if module_broken(&f) => *life,
                Err(f) => return Err(f),
            }
        };
        target.module.restart(seen);
        let life = target.module.read();
        Self::connect(target, &life, false)
    }

    fn new(target: Target, c: Connected) -> TokenKey {
        TokenKey {
            target,
            shape: c.shape,
            public: c.public,
            live: Mutex::new(Some(c.live)),
        }
    }

    /// Signs on `live`'s session; `None` when that session is from an earlier life of the
    /// module.
    fn sign_with(&self, live: &Live, message: &[u8]) -> Option<Result<Vec<u8>, CkError>> {
        let life = self.target.module.read();
        if !life.initialised || life.number != live.life {
            return None;
        }
        let sign = |mech: &Mechanism, data: &[u8]| {
            if live.always_authenticate {
                // CKA_ALWAYS_AUTHENTICATE: the PIN again before each use (PKCS#11 private key objects).
                live.session
                    .login(UserType::ContextSpecific, Some(&self.target.pin))?;
            }
            live.session.sign(mech, live.key, data)
        };
        Some(match self.shape {
            // CKM_ECDSA signs a digest we compute (PKCS#11 mechanisms, ECDSA); X9.62 truncation is not
            // needed because the digest size equals the curve size.
            Shape::P256 => sign(
                &Mechanism::Ecdsa,
                digest::digest(&digest::SHA256, message).as_ref(),
            ),
            Shape::P384 => sign(
                &Mechanism::Ecdsa,
                digest::digest(&digest::SHA384, message).as_ref(),
            ),
            Shape::Rsa => sign(&Mechanism::Sha256RsaPkcs, message),
        })
    }

    fn encode(&self, raw: Vec<u8>) -> Result<Vec<u8>, CaError> {
        match self.shape {
            Shape::P256 | Shape::P384 => ecdsa_der(&raw).map_err(|f| self.target.fail(f).into()),
            Shape::Rsa => Ok(raw),
        }
    }

    fn unavailable(&self, f: Fault) -> CaError {
        CaError::Unavailable(self.target.fail(f).to_string())
    }

    /// Signs and checks the signature with the public key we report, so that a public key
    /// object that belongs to another key is caught when the key is opened.
    fn self_test(&self) -> Result<(), Pkcs11Error> {
        let message = b"sceau PKCS#11 key check";
        let sig = CaKey::sign(self, message).map_err(|e| match e {
            CaError::Pkcs11(e) => e,
            other => self.target.fail(Fault::Token {
                op: "C_Sign",
                rv: other.to_string(),
            }),
        })?;
        UnparsedPublicKey::new(self.shape.verify_alg(), &self.public)
            .verify(message, &sig)
            .map_err(|_| {
                self.target
                    .fail(Fault::Mismatch(self.target.key.describe()))
            })
    }
}

impl CaKey for TokenKey {
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.shape.algorithm()
    }

    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        let mut live = lock(&self.live);
        match live.as_ref().and_then(|l| self.sign_with(l, message)) {
            Some(Ok(raw)) => return self.encode(raw),
            Some(Err(e)) if session_lost(&e) => {
                tracing::warn!(key = %redacted_uri(&self.target.uri), error = %ckr_or(&e), "PKCS#11 session lost; reopening it");
            }
            Some(Err(e)) => return Err(self.target.fail(token_fault("C_Sign", e)).into()),
            None => {}
        }
        // The session is gone, or from before a module restart: one fresh session per
        // signature, no more, so that a token that is away fails fast and the caller (the
        // issuance queue) retries later.
        *live = None;
        let fresh = Self::reconnect(&self.target).map_err(|f| self.unavailable(f))?;
        if fresh.shape != self.shape || fresh.public != self.public {
            return Err(self.unavailable(Fault::Mismatch(self.target.key.describe())));
        }
        let raw = match self.sign_with(&fresh.live, message) {
            Some(Ok(raw)) => raw,
            Some(Err(e)) => return Err(self.unavailable(token_fault("C_Sign", e))),
            None => {
                return Err(self.unavailable(Fault::Token {
                    op: "C_Sign",
                    rv: "the module restarted meanwhile".into(),
                }));
            }
        };
        *live = Some(fresh.live);
        self.encode(raw)
    }

    fn key_ref(&self) -> KeyRef {
        KeyRef::Pkcs11(self.target.uri.clone())
    }
}

fn ckr_or(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, _) => ckr_name(*rv),
        other => other.to_string(),
    }
}

/// Opens the key the URI names, for signing.
pub(crate) fn open_key(uri: &str) -> Result<KeyHandle, CaError> {
    let target = Target::resolve(uri)?;
    let connected = {
        let life = target.module.read();
        TokenKey::connect(&target, &life, false).map_err(|f| target.fail(f))?
    };
    let key = TokenKey::new(target, connected);
    key.self_test()?;
    Ok(KeyHandle::new(key))
}

/// Generates a key pair of `kind` on the token, labelled and identified as the URI says.
pub(crate) fn generate_key(uri: &str, kind: CaKeyKind) -> Result<KeyHandle, CaError> {
    let target = Target::resolve(uri)?;
    let connected = {
        let life = target.module.read();
        generate_pair(&target, &life, kind).map_err(|f| target.fail(f))?
    };
    let key = TokenKey::new(target, connected);
    key.self_test()?;
    tracing::info!(key = %redacted_uri(uri), kind = %kind, "generated a CA key pair on the token");
    Ok(KeyHandle::new(key))
}

fn generate_pair(target: &Target, life: &Life, kind: CaKeyKind) -> Result<Connected, Fault> {
    let session = target.login(life, true)?;
    // Any object (key, certificate, data) with this label or id: a second object would make
    // the URI ambiguous, and replacing one would lose a CA key.
    for probe in [
        KeySpec {
            label: target.key.label.clone(),
            id: None,
        },
        KeySpec {
            label: None,
            id: target.key.id.clone(),
        },
    ] {
        if probe.label.is_none() && probe.id.is_none() {
            continue;
        }
        let found = session
            .find_objects(&probe.template(None))
            .map_err(|e| token_fault("C_FindObjects", e))?;
        if !found.is_empty() {
            return Err(Fault::Exists(probe.describe()));
        }
    }
    // Objects without a CKA_ID pair with every other id-less object; a random id keeps this
    // pair together for tools that match public and private keys by id.
    let id = match &target.key.id {
        Some(id) => id.clone(),
        None => {
            let mut id = vec![0u8; 16];
            aws_lc_rs::rand::fill(&mut id).map_err(|_| Fault::Token {
                op: "random id",
                rv: "no randomness".into(),
            })?;
            id
        }
    };
    let mut naming = vec![Attribute::Id(id.clone())];
    if let Some(l) = &target.key.label {
        naming.push(Attribute::Label(l.as_bytes().to_vec()));
    }
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
    ];
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    public.extend(naming.iter().cloned());
    private.extend(naming);
    let mechanism = match kind {
        CaKeyKind::P256 | CaKeyKind::P384 => {
            let oid = if kind == CaKeyKind::P256 {
                der::P256_OID.to_vec()
            } else {
                der::P384_OID.to_vec()
            };
            public.push(Attribute::EcParams(oid));
            private.push(Attribute::Derive(false));
            Mechanism::EccKeyPairGen
        }
        CaKeyKind::Rsa3072 | CaKeyKind::Rsa4096 => {
            let bits: u64 = if kind == CaKeyKind::Rsa3072 {
                3072
            } else {
                4096
            };
            public.push(Attribute::ModulusBits(bits.into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            private.push(Attribute::Decrypt(false));
            Mechanism::RsaPkcsKeyPairGen
        }
    };
    let (_, private_handle) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| token_fault("C_GenerateKeyPair", e))?;
    let spec = KeySpec {
        label: target.key.label.clone(),
        id: Some(id),
    };
    let (shape, public_key) = read_public(&session, private_handle, &spec)?;
    Ok(Connected {
        live: Live {
            session: ManuallyDrop::new(session),
            key: private_handle,
            always_authenticate: false,
            life: life.number,
            module: target.module.clone(),
        },
        shape,
        public: public_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_redact() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=sceau;object=issuing%202026;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
        )
        .unwrap();
        assert_eq!(u.path_attr("token"), Some("sceau"));
        assert_eq!(u.path_attr("object"), Some("issuing 2026"));
        assert_eq!(u.path_bytes("id"), Some(&[1u8, 2][..]));
        assert_eq!(
            u.query_attr("module-path"),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        assert_eq!(u.query_attr("pin-value"), Some("1234"));
        assert!(!format!("{u:?}").contains("1234"));
        let r = redacted_uri("pkcs11:token=a?pin-value=1234&module-path=/m.so");
        assert_eq!(r, "pkcs11:token=a?pin-value=***&module-path=/m.so");
        assert!(!r.contains("1234"));
        assert_eq!(
            redacted_uri("pkcs11:token=a;pin-value=1234;object=k"),
            "pkcs11:token=a;pin-value=***;object=k"
        );
        assert!(Pkcs11Uri::parse("file:x").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=%zz").is_err());
    }

    #[test]
    fn ids_are_bytes_and_other_values_text() {
        let u = Pkcs11Uri::parse("pkcs11:object=k;id=%ff%00%80").unwrap();
        assert_eq!(u.path_bytes("id"), Some(&[0xff, 0x00, 0x80][..]));
        let err = Pkcs11Uri::parse("pkcs11:object=%ff")
            .unwrap_err()
            .to_string();
        assert!(err.contains("object is not UTF-8"), "{err}");
        let err = Pkcs11Uri::parse("pkcs11:object=a;object=b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("appears twice"), "{err}");
        // A malformed PIN is reported without its value.
        let err = Pkcs11Uri::parse("pkcs11:object=a?pin-value=12%3")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("12%3"), "{err}");
        assert!(err.contains("pin-value: truncated"), "{err}");
    }

    #[test]
    fn signatures_and_keys_are_der() {
        // r with its high bit set gets a 0 byte; s with leading zeros loses them.
        let mut raw = vec![0x80; 32];
        raw.extend([0u8; 31]);
        raw.push(0x05);
        let der = ecdsa_der(&raw).unwrap();
        let mut expected = vec![0x30, 0x26, 0x02, 0x21, 0x00];
        expected.extend([0x80; 32]);
        expected.extend([0x02, 0x01, 0x05]);
        assert_eq!(der, expected);
        assert!(ecdsa_der(&[1, 2, 3]).is_err());
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let mut wrapped = vec![0x04, 0x41];
        wrapped.extend(&point);
        assert_eq!(unwrap_ec_point(&wrapped, 65), Some(point.clone()));
        assert_eq!(unwrap_ec_point(&point, 65), Some(point.clone()));
        assert_eq!(unwrap_ec_point(&wrapped[..60], 65), None);
        let mut p384 = vec![0x04];
        p384.extend([9u8; 96]);
        let mut wrapped = vec![0x04, 0x61];
        wrapped.extend(&p384);
        assert_eq!(unwrap_ec_point(&wrapped, 97), Some(p384));
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
    }
}
