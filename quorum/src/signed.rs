//! ed25519 signatures over a domain tag and the canonical ballot bytes, and the wire envelope.
//!
//! ```text
//! signed = "QGS" version:u8(=1) ballot_len:u32 ballot_bytes signature:[64]
//! ```
//! The signature covers `DOMAIN_TAG ‖ ballot_bytes`, so a ballot signature can never be
//! replayed as a signature over anything else this key signs.

use ed25519_dalek::{Signature, Signer};
pub use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::ballot::Ballot;
use crate::codec::{decode_ballot, encode_ballot, DecodeError, Reader, Writer, BALLOT_VERSION};

/// Prefix of every signed message: separates ballot signatures from any other use of the key.
pub const DOMAIN_TAG: &[u8] = b"quorumgate/ballot/v1\0";
const SIGNED_MAGIC: &[u8; 3] = b"QGS";
/// Envelope overhead around the ballot bytes.
pub const ENVELOPE_LEN: usize = 4 + 4 + 64;

/// A ballot's canonical bytes and its signature, as sent on the wire.
///
/// Holding a `SignedBallot` says nothing about validity: it is verified by
/// [`SignedBallot::verify`] (or by the book on receipt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBallot {
    ballot_bytes: Vec<u8>,
    signature: [u8; 64],
}

/// Why a signed envelope fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature does not verify")]
    Invalid,
}

impl SignedBallot {
    /// Encodes and signs `ballot`.
    #[must_use]
    pub fn sign(ballot: &Ballot, key: &SigningKey) -> Self {
        let ballot_bytes = encode_ballot(ballot);
        let signature = key.sign(&signed_message(&ballot_bytes)).to_bytes();
        Self {
            ballot_bytes,
            signature,
        }
    }

    /// The canonical ballot bytes (unverified).
    #[must_use]
    pub fn ballot_bytes(&self) -> &[u8] {
        &self.ballot_bytes
    }

    #[must_use]
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Decodes the ballot without checking the signature; callers must still [`verify`](Self::verify).
    pub fn decode_unverified(&self) -> Result<Ballot, DecodeError> {
        decode_ballot(&self.ballot_bytes)
    }

    /// Checks the signature with `key` (strict: rejects small-order and non-canonical forms).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), SignatureError> {
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_message(&self.ballot_bytes), &sig)
            .map_err(|_| SignatureError::Invalid)
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(ENVELOPE_LEN + self.ballot_bytes.len());
        w.bytes(SIGNED_MAGIC);
        w.u8(BALLOT_VERSION);
        // Ballots are bounded far below 4 GiB by MAX_OBSERVATIONS and the field limits.
        w.u32(u32::try_from(self.ballot_bytes.len()).unwrap_or(u32::MAX));
        w.bytes(&self.ballot_bytes);
        w.bytes(&self.signature);
        w.buf
    }

    /// Parses the wire form. Never panics; allocates at most `bytes.len()`.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(SIGNED_MAGIC, "signed ballot")?;
        let len = r.u32()? as usize;
        let ballot_bytes = r.take(len)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Self {
            ballot_bytes,
            signature,
        })
    }
}

fn signed_message(ballot_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN_TAG.len() + ballot_bytes.len());
    m.extend_from_slice(DOMAIN_TAG);
    m.extend_from_slice(ballot_bytes);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, ConfigDigest, UnixMillis};

    fn ballot() -> Ballot {
        Ballot::new(
            AgentId::new("a").unwrap(),
            1,
            UnixMillis(10),
            100,
            ConfigDigest([1; 32]),
            vec![],
        )
        .unwrap()
    }

    #[test]
    fn sign_verify_and_wire_round_trip() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let s = SignedBallot::sign(&ballot(), &key);
        assert!(s.verify_signature(&key.verifying_key()).is_ok());
        let back = SignedBallot::from_wire(&s.to_wire()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.decode_unverified().unwrap(), ballot());
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert_eq!(s.verify_signature(&other), Err(SignatureError::Invalid));
    }

    #[test]
    fn any_flipped_bit_breaks_the_signature_or_the_envelope() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let wire = SignedBallot::sign(&ballot(), &key).to_wire();
        for i in 0..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 0x01;
            let ok = SignedBallot::from_wire(&w)
                .is_ok_and(|s| s.verify_signature(&key.verifying_key()).is_ok());
            assert!(!ok, "flip at byte {i} still verified");
        }
    }

    #[test]
    fn truncations_are_errors() {
        let wire = SignedBallot::sign(&ballot(), &SigningKey::from_bytes(&[3; 32])).to_wire();
        for cut in 0..wire.len() {
            assert!(SignedBallot::from_wire(&wire[..cut]).is_err());
        }
    }
}
