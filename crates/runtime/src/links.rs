//! Signed ingress links: a token that reaches one port of one sandbox, without an API key,
//! until it expires or its sandbox's links are revoked. The token carries what it opens and
//! when it stops, signed with the server's link secret, so nothing is stored per link.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::RuntimeError;
use crate::model::now_ms;
use crate::runtime::Runtime;

/// The longest a link may live: a week.
pub const MAX_LINK_SECONDS: u64 = 7 * 24 * 3600;

/// Bytes of the HMAC-SHA256 kept in a token: 128 bits, as much as a forger must guess.
const SIGNATURE_BYTES: usize = 16;

/// What a link opens, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressLink {
    /// The sandbox.
    pub sandbox_id: String,
    /// The port inside it.
    pub port: u16,
    /// When the link was made (ms since the epoch); revoking refuses links made before then.
    pub issued_ms: i64,
    /// When it stops working (ms since the epoch).
    pub expires_ms: i64,
}

/// Why a presented link opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a token this server made: malformed, or its signature does not match.
    Forged,
    /// Past its expiry.
    Expired,
    /// Made before the sandbox's links were revoked.
    Revoked,
}

impl IngressLink {
    /// The token: `ID.PORT.ISSUED.EXPIRES.SIGNATURE`, all URL-safe.
    fn sign(&self, secret: &str) -> String {
        let claims = self.claims();
        let signature: String = mac(secret, &claims).finalize().into_bytes()[..SIGNATURE_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{claims}.{signature}")
    }

    /// The link a token stands for, when this server signed it.
    fn verify(secret: &str, token: &str) -> Result<IngressLink, LinkRefusal> {
        let (claims, signature) = token.rsplit_once('.').ok_or(LinkRefusal::Forged)?;
        let signature = decode_hex(signature).ok_or(LinkRefusal::Forged)?;
        // `verify_truncated_left` compares in constant time.
        mac(secret, claims).verify_truncated_left(&signature).map_err(|_| LinkRefusal::Forged)?;
        let mut fields = claims.split('.');
        let mut next = || fields.next().ok_or(LinkRefusal::Forged);
        let sandbox_id = next()?.to_owned();
        let port = next()?.parse().map_err(|_| LinkRefusal::Forged)?;
        let issued_ms = next()?.parse().map_err(|_| LinkRefusal::Forged)?;
        let expires_ms = next()?.parse().map_err(|_| LinkRefusal::Forged)?;
        Ok(IngressLink { sandbox_id, port, issued_ms, expires_ms })
    }

    fn claims(&self) -> String {
        format!("{}.{}.{}.{}", self.sandbox_id, self.port, self.issued_ms, self.expires_ms)
    }
}

fn mac(secret: &str, claims: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(b"ingress-link\n");
    mac.update(claims.as_bytes());
    mac
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != SIGNATURE_BYTES * 2 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

impl Runtime {
    /// A link to `port` of the owner's sandbox `id` that works for `seconds` (1 to
    /// [`MAX_LINK_SECONDS`]), and its token.
    pub fn create_ingress_link(
        &self,
        owner: Option<&str>,
        id: &str,
        port: u16,
        seconds: u64,
    ) -> Result<(String, IngressLink), RuntimeError> {
        self.find(owner, id)?;
        if port == 0 {
            return Err(RuntimeError::Invalid {
                field: "port".to_owned(),
                reason: "0 is not a port".to_owned(),
            });
        }
        if !(1..=MAX_LINK_SECONDS).contains(&seconds) {
            return Err(RuntimeError::Invalid {
                field: "expires_in".to_owned(),
                reason: format!("must be 1 to {MAX_LINK_SECONDS} seconds (a week)"),
            });
        }
        let issued_ms = now_ms();
        let link = IngressLink {
            sandbox_id: id.to_owned(),
            port,
            issued_ms,
            expires_ms: issued_ms + seconds as i64 * 1000,
        };
        Ok((link.sign(self.link_secret()), link))
    }

    /// Refuse every link to the owner's sandbox `id` made until now.
    pub fn revoke_ingress_links(&self, owner: Option<&str>, id: &str) -> Result<(), RuntimeError> {
        let sandbox = self.find(owner, id)?;
        // A link made in this same millisecond is refused too: `issued_ms` must be later.
        let now = now_ms() + 1;
        self.update_record(&sandbox, "revoke its links", |record| {
            record.links_valid_from_ms = now;
            Ok(())
        })?;
        Ok(())
    }

    /// The owner of the sandbox a link token opens, and the link, when the token is valid now.
    pub fn open_ingress_link(&self, token: &str) -> Result<(Option<String>, IngressLink), RuntimeError> {
        let refused = |reason| RuntimeError::LinkRefused { reason };
        let link = IngressLink::verify(self.link_secret(), token).map_err(refused)?;
        if now_ms() >= link.expires_ms {
            return Err(refused(LinkRefusal::Expired));
        }
        let record = self.any_record(&link.sandbox_id)?;
        if link.issued_ms < record.links_valid_from_ms {
            return Err(refused(LinkRefusal::Revoked));
        }
        Ok((record.owner, link))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> IngressLink {
        IngressLink { sandbox_id: "sbx_0123".into(), port: 8000, issued_ms: 1_000, expires_ms: 61_000 }
    }

    #[test]
    fn a_signed_link_verifies_with_its_secret_only() {
        let token = link().sign("secret-a");
        assert_eq!(IngressLink::verify("secret-a", &token), Ok(link()));
        assert_eq!(IngressLink::verify("secret-b", &token), Err(LinkRefusal::Forged));
    }

    #[test]
    fn changing_any_claim_breaks_the_signature() {
        let token = link().sign("s");
        let (_, signature) = token.rsplit_once('.').unwrap();
        for other in [
            IngressLink { sandbox_id: "sbx_0124".into(), ..link() },
            IngressLink { port: 8001, ..link() },
            IngressLink { issued_ms: 2_000, ..link() },
            IngressLink { expires_ms: 999_999_999, ..link() },
        ] {
            let forged = format!("{}.{signature}", other.claims());
            assert_eq!(IngressLink::verify("s", &forged), Err(LinkRefusal::Forged), "{forged}");
        }
    }

    #[test]
    fn malformed_tokens_are_forged() {
        let token = link().sign("s");
        for bad in ["", ".", "abc", &token[..token.len() - 1], &format!("{token}0"), &token.replace('.', "-")]
        {
            assert_eq!(IngressLink::verify("s", bad), Err(LinkRefusal::Forged), "{bad}");
        }
    }
}
