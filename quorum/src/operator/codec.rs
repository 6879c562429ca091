//! The canonical bytes of an [`OperatorCommand`] and its signed envelope.
//!
//! ```text
//! command  = "QGO" version:u8 [cluster if version=2] operator:str8 gate:str8 seq:u64
//!            issued_at:u64 valid_for_ms:u32 action note:str16
//! cluster  = name:str16 members_sha256:[32]          (see crate::cluster)
//! action   = 0 (freeze) | 1 (unfreeze) | 2 to:str8 (approve)
//!          | 3 force:u8 desired (override; desired as in gate::desired)
//!          | 4 duration_ms:u32 dry_run:u8 (drill) | 5 (drill abort)
//! signed   = "QGX" version:u8(=1) command_len:u32 command signature:[64]
//! ```
//!
//! Version 2 binds the command to one cluster; this build signs only version 2. Version 1
//! (no cluster) still decodes, with `cluster: None`, so the audit logs of older releases
//! replay at start-up and `quorumgate verify` checks them; the
//! [`OperatorBook`](super::OperatorBook) refuses a version-1 command on receipt.
//!
//! Same rules as ballots: big-endian, one byte form per command (flags 0 or 1, no trailing
//! bytes, valid tokens), decoding never panics and allocates at most the input's size.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{Action, OperatorCommand, MAX_NOTE_LEN};
use crate::cluster::ClusterId;
use crate::codec::{id, DecodeError, Reader, Writer, BALLOT_VERSION};
use crate::gate::DesiredState;
use crate::time::UnixMillis;

/// Prefix of every signed command; differs from the ballot tag so neither passes as the other.
pub const OPERATOR_DOMAIN_TAG: &[u8] = b"quorumgate/operator/v1\0";
/// Hard ceiling on a signed command's wire size (a 100-target override fits easily).
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

const COMMAND_MAGIC: &[u8; 3] = b"QGO";
/// The command version without a cluster identity (decoded, refused on receipt).
pub const COMMAND_VERSION_1: u8 = 1;
/// The command version this build signs: bound to a cluster.
pub const COMMAND_VERSION: u8 = 2;
const SIGNED_MAGIC: &[u8; 3] = b"QGX";

/// The canonical bytes of `cmd`.
#[must_use]
pub fn encode_command(cmd: &OperatorCommand) -> Vec<u8> {
    let mut w = Writer::with_capacity(128);
    w.bytes(COMMAND_MAGIC);
    match &cmd.cluster {
        Some(cluster) => {
            w.u8(COMMAND_VERSION);
            w.str16(&cluster.name);
            w.bytes(&cluster.members_sha256);
        }
        None => w.u8(COMMAND_VERSION_1),
    }
    w.str8(cmd.operator.as_str());
    w.str8(cmd.gate.as_str());
    w.u64(cmd.seq);
    w.u64(cmd.issued_at.0);
    w.u32(cmd.valid_for_ms);
    match &cmd.action {
        Action::Freeze => w.u8(0),
        Action::Unfreeze => w.u8(1),
        Action::Approve { to } => {
            w.u8(2);
            w.str8(to.as_str());
        }
        Action::Override { desired, force } => {
            w.u8(3);
            w.u8(u8::from(*force));
            desired.encode_into(&mut w);
        }
        Action::Drill {
            duration_ms,
            dry_run,
        } => {
            w.u8(4);
            w.u32(*duration_ms);
            w.u8(u8::from(*dry_run));
        }
        Action::DrillAbort => w.u8(5),
    }
    w.str16(&cmd.note);
    w.buf
}

/// Decodes canonical command bytes. Never panics; allocation is bounded by `bytes.len()`.
pub fn decode_command(bytes: &[u8]) -> Result<OperatorCommand, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.take(3)? != COMMAND_MAGIC {
        return Err(DecodeError::BadMagic("operator command"));
    }
    let cluster = match r.u8()? {
        COMMAND_VERSION_1 => None,
        COMMAND_VERSION => {
            let name = r.str16("cluster name")?.to_owned();
            let members_sha256 = r.array()?;
            Some(ClusterId {
                name,
                members_sha256,
            })
        }
        v => return Err(DecodeError::UnsupportedVersion(v)),
    };
    let operator = id(r.str8("operator")?, "operator")?;
    let gate = id(r.str8("gate")?, "gate")?;
    let seq = r.u64()?;
    let issued_at = UnixMillis(r.u64()?);
    let valid_for_ms = r.u32()?;
    let action = match r.u8()? {
        0 => Action::Freeze,
        1 => Action::Unfreeze,
        2 => Action::Approve {
            to: id(r.str8("target")?, "target")?,
        },
        3 => {
            let force = flag(&mut r, "force flag")?;
            let desired = DesiredState::decode_from(&mut r)?;
            Action::Override { desired, force }
        }
        4 => {
            let duration_ms = r.u32()?;
            let dry_run = flag(&mut r, "dry-run flag")?;
            Action::Drill {
                duration_ms,
                dry_run,
            }
        }
        5 => Action::DrillAbort,
        value => {
            return Err(DecodeError::BadEnum {
                field: "action",
                value,
            })
        }
    };
    let note = r.str16("note")?;
    if note.len() > MAX_NOTE_LEN {
        return Err(DecodeError::TooMany {
            field: "note bytes",
            count: note.len(),
            max: MAX_NOTE_LEN,
        });
    }
    r.finish()?;
    Ok(OperatorCommand {
        cluster,
        operator,
        gate,
        action,
        seq,
        issued_at,
        valid_for_ms,
        note: note.to_owned(),
    })
}

/// A boolean byte: 0 or 1, nothing else (one byte form per command).
fn flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(DecodeError::BadEnum { field, value }),
    }
}

/// A command's canonical bytes and the operator's signature, as sent on the wire.
/// Holding one says nothing about validity; [`OperatorBook`](super::OperatorBook) checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCommand {
    command_bytes: Vec<u8>,
    signature: [u8; 64],
}

impl SignedCommand {
    /// Encodes and signs `cmd`. Fails if the encoding would not decode (a note longer than
    /// [`MAX_NOTE_LEN`] set directly, an override with too many targets): an operator never
    /// signs something agents must refuse as undecodable.
    pub fn sign(cmd: &OperatorCommand, key: &SigningKey) -> Result<Self, DecodeError> {
        let command_bytes = encode_command(cmd);
        decode_command(&command_bytes)?;
        let signature = key.sign(&signed_message(&command_bytes)).to_bytes();
        Ok(Self {
            command_bytes,
            signature,
        })
    }

    /// The canonical command bytes (unverified).
    #[must_use]
    pub fn command_bytes(&self) -> &[u8] {
        &self.command_bytes
    }

    #[must_use]
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// Decodes the command without checking the signature.
    pub fn decode_unverified(&self) -> Result<OperatorCommand, DecodeError> {
        decode_command(&self.command_bytes)
    }

    /// Checks the signature with `key` (strict verification, operator domain tag).
    #[must_use]
    pub fn verifies_with(&self, key: &VerifyingKey) -> bool {
        let sig = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_message(&self.command_bytes), &sig)
            .is_ok()
    }

    /// The wire form.
    #[must_use]
    pub fn to_wire(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + 4 + self.command_bytes.len() + 64);
        w.bytes(SIGNED_MAGIC);
        w.u8(BALLOT_VERSION);
        // Commands are bounded far below 4 GiB by their field limits.
        w.u32(u32::try_from(self.command_bytes.len()).unwrap_or(u32::MAX));
        w.bytes(&self.command_bytes);
        w.bytes(&self.signature);
        w.buf
    }

    /// Parses the wire form. Never panics; allocates at most `bytes.len()`.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(SIGNED_MAGIC, "signed operator command")?;
        let len = r.u32()? as usize;
        let command_bytes = r.take(len)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Self {
            command_bytes,
            signature,
        })
    }

    /// SHA-256 of the wire form, hex: what logs and the audit log cite.
    #[must_use]
    pub fn digest_hex(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.to_wire()))
    }
}

fn signed_message(command_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(OPERATOR_DOMAIN_TAG.len() + command_bytes.len());
    m.extend_from_slice(OPERATOR_DOMAIN_TAG);
    m.extend_from_slice(command_bytes);
    m
}
