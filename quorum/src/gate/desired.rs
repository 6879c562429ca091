//! The desired DNS state of a gate: a plain, comparable value that the Route 53 writer turns
//! into records, with a canonical byte form whose SHA-256 the fence record carries.
//!
//! ```text
//! desired  = "QGD" version:u8(=1) kind:u8 body
//! kind 0   = failover: active:str8
//! kind 1   = weighted: count:u16 (target:str8 weight:u8)*count   (targets strictly ascending)
//! ```
//!
//! The decoder accepts exactly the encoder's output (no trailing bytes, ascending targets, at
//! most [`MAX_TARGETS`]), so one state has one byte form and one digest.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::codec::{id, DecodeError, Reader, Writer, BALLOT_VERSION};
use crate::ids::TargetId;

const DESIRED_MAGIC: &[u8; 3] = b"QGD";
/// Most targets one gate may have (a bound for decoding untrusted bytes).
pub const MAX_TARGETS: usize = 100;

/// What DNS should answer for one gate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DesiredState {
    /// Failover pair: the target the records send traffic to (the other one is standby).
    Failover { active: TargetId },
    /// Weighted set: every target's weight (Route 53 weights are 0–255; 0 means drained).
    Weighted { weights: BTreeMap<TargetId, u8> },
}

impl DesiredState {
    /// A weighted state from `(target, weight)` pairs (a later duplicate wins).
    pub fn weighted(pairs: impl IntoIterator<Item = (TargetId, u8)>) -> Self {
        DesiredState::Weighted {
            weights: pairs.into_iter().collect(),
        }
    }

    /// How many targets receive traffic: 1 for a failover pair, the non-zero weights otherwise.
    #[must_use]
    pub fn serving(&self) -> usize {
        match self {
            DesiredState::Failover { .. } => 1,
            DesiredState::Weighted { weights } => weights.values().filter(|w| **w > 0).count(),
        }
    }

    /// The share of traffic `target` gets, as a weight: for a failover pair 1 when active and
    /// 0 otherwise. Unknown targets get 0.
    #[must_use]
    pub fn weight(&self, target: &TargetId) -> u8 {
        match self {
            DesiredState::Failover { active } => u8::from(active == target),
            DesiredState::Weighted { weights } => weights.get(target).copied().unwrap_or(0),
        }
    }

    /// The canonical bytes (see the module docs).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64);
        self.encode_into(&mut w);
        w.buf
    }

    /// Parses canonical bytes. Never panics; allocates at most `bytes.len()`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let state = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(state)
    }

    /// SHA-256 of [`to_bytes`](Self::to_bytes): what the fence record names.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }

    /// [`digest`](Self::digest) as 64 lowercase hex characters.
    #[must_use]
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.bytes(DESIRED_MAGIC);
        w.u8(BALLOT_VERSION);
        match self {
            DesiredState::Failover { active } => {
                w.u8(0);
                w.str8(active.as_str());
            }
            DesiredState::Weighted { weights } => {
                w.u8(1);
                // More than MAX_TARGETS never passes GateSpec validation; the decoder refuses it.
                w.u16(u16::try_from(weights.len()).unwrap_or(u16::MAX));
                for (target, weight) in weights {
                    w.str8(target.as_str());
                    w.u8(*weight);
                }
            }
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.magic(DESIRED_MAGIC, "desired state")?;
        match r.u8()? {
            0 => Ok(DesiredState::Failover {
                active: id(r.str8("target")?, "target")?,
            }),
            1 => decode_weights(r),
            value => Err(DecodeError::BadEnum {
                field: "desired state kind",
                value,
            }),
        }
    }
}

fn decode_weights(r: &mut Reader<'_>) -> Result<DesiredState, DecodeError> {
    let count = usize::from(r.u16()?);
    if count > MAX_TARGETS {
        return Err(DecodeError::TooMany {
            field: "targets",
            count,
            max: MAX_TARGETS,
        });
    }
    let mut weights = BTreeMap::new();
    let mut last: Option<TargetId> = None;
    for _ in 0..count {
        let target: TargetId = id(r.str8("target")?, "target")?;
        if last.as_ref().is_some_and(|l| *l >= target) {
            return Err(DecodeError::NotCanonical(target.to_string()));
        }
        weights.insert(target.clone(), r.u8()?);
        last = Some(target);
    }
    Ok(DesiredState::Weighted { weights })
}

impl fmt::Display for DesiredState {
    /// `active=eu-west-1`, or `eu=100,us=0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DesiredState::Failover { active } => write!(f, "active={active}"),
            DesiredState::Weighted { weights } => {
                for (i, (target, weight)) in weights.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{target}={weight}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TargetId {
        TargetId::new(s).unwrap()
    }

    fn samples() -> Vec<DesiredState> {
        vec![
            DesiredState::Failover { active: t("use1") },
            DesiredState::weighted([(t("a"), 100), (t("b"), 0), (t("c"), 255)]),
            DesiredState::weighted([]),
        ]
    }

    #[test]
    fn round_trips_and_digests_differ() {
        let mut digests = std::collections::BTreeSet::new();
        for s in samples() {
            assert_eq!(DesiredState::from_bytes(&s.to_bytes()).unwrap(), s);
            assert_eq!(s.digest_hex().len(), 64);
            assert!(digests.insert(s.digest()), "{s}");
        }
        let w = &samples()[1];
        assert_eq!(
            (w.serving(), w.weight(&t("c")), w.weight(&t("z"))),
            (2, 255, 0)
        );
        assert_eq!(w.to_string(), "a=100,b=0,c=255");
        assert_eq!(samples()[0].to_string(), "active=use1");
    }

    #[test]
    fn truncations_flips_and_non_canonical_forms_are_errors() {
        for s in samples() {
            let bytes = s.to_bytes();
            for cut in 0..bytes.len() {
                assert!(DesiredState::from_bytes(&bytes[..cut]).is_err());
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(
                DesiredState::from_bytes(&long),
                Err(DecodeError::TrailingBytes(1))
            );
        }
        let mut w = Writer::default();
        w.bytes(DESIRED_MAGIC);
        w.u8(1);
        w.u8(1);
        w.u16(2);
        for name in ["b", "a"] {
            w.str8(name);
            w.u8(1);
        }
        assert!(matches!(
            DesiredState::from_bytes(&w.buf),
            Err(DecodeError::NotCanonical(_))
        ));
        let mut w = Writer::default();
        w.bytes(DESIRED_MAGIC);
        w.u8(1);
        w.u8(1);
        w.u16(u16::MAX);
        assert!(matches!(
            DesiredState::from_bytes(&w.buf),
            Err(DecodeError::TooMany { .. })
        ));
    }
}
