//! Unpadded base64url (RFC 7515 §2, RFC 4648 §5). Padded or non-URL-safe input is an error.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn encode(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_padding_and_standard_alphabet() {
        assert_eq!(super::decode("AQAB").unwrap(), vec![1, 0, 1]);
        assert!(super::decode("AQ==").is_err());
        assert!(super::decode("a+b/").is_err());
        assert_eq!(super::encode([0xfb, 0xff]), "-_8");
    }
}
