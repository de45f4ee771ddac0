//! Console passwords: Argon2id (RFC 9106) with the argon2 crate's defaults (19 MiB, two
//! passes, one lane: OWASP's recommended minimum), stored as PHC strings.
//!
//! Invariants:
//! - Hashing and verifying run off the async threads (tens of milliseconds of CPU each).
//! - A login for an unknown user verifies against a fixed hash all the same, so the time taken
//!   does not tell which user names exist.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (the hash reads all of it).
pub const MAX_LEN: usize = 1024;

/// Checks a new password's length; the message says what is wrong.
pub fn check_new(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!("a password has at least {MIN_LEN} characters"));
    }
    if password.len() > MAX_LEN {
        return Err(format!("a password has at most {MAX_LEN} bytes"));
    }
    Ok(())
}

/// The PHC string of `password` under a fresh random salt.
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).expect("OS random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id of a bounded password")
        .to_string()
}

/// A hash no password matches, verified in place of an unknown user's.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("no user has this password, it is never shown"))
}

/// `password` matches `phc` (`None`: the user does not exist; the work is done anyway).
pub fn verify(phc: Option<&str>, password: &str) -> bool {
    if password.len() > MAX_LEN {
        return false;
    }
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| decoy());
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && known
}

/// [`verify`] on a blocking thread.
pub async fn verify_blocking(phc: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || verify(phc.as_deref(), &password))
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery staple");
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify(Some(&h), "correct horse battery staple"));
        assert!(!verify(Some(&h), "correct horse battery stapl"));
        assert!(!verify(None, "correct horse battery staple"));
        assert_ne!(h, hash("correct horse battery staple"), "salted");
    }

    #[test]
    fn new_passwords_are_checked() {
        assert!(check_new("short").is_err());
        assert!(check_new("twelve chars").is_ok());
        assert!(check_new(&"x".repeat(2000)).is_err());
    }
}
