//! Key files: one per password, each wrapping the same master keys.
//!
//! ```text
//! object header (kind 2) ‖ postcard(KeyFile)
//! KeyFile.master      = envelope(KEK = Argon2id(password, salt), aad = header ‖ "master",
//!                                payload(postcard(KeyPayload)))
//! KeyFile.description = envelope(master data key, aad = header ‖ "description",
//!                                payload(postcard(KeyDescription)))
//! ```
//! The description is sealed with the data key, not the password, so `key list` can show every
//! key's host and creation time while storage learns nothing.

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::id::RepoId;
use super::object::{self, ObjectKind};
use crate::crypto::{self, KdfParams, Key32, MasterKeys, kdf};
use crate::error::{Error, ErrorKind, Result};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub kdf: KdfParams,
    pub salt: [u8; 32],
    pub master: Vec<u8>,
    pub description: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct KeyPayload {
    repo_id: RepoId,
    keys: MasterKeys,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDescription {
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub hostname: String,
    pub username: String,
}

fn aad(part: &[u8]) -> Vec<u8> {
    let mut aad = object::header(ObjectKind::Key).to_vec();
    aad.extend_from_slice(part);
    aad
}

/// Builds the bytes of a new key file for `password`.
pub fn create(
    password: &[u8],
    kdf_params: KdfParams,
    repo_id: RepoId,
    keys: &MasterKeys,
    description: &KeyDescription,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>> {
    let mut salt = [0u8; 32];
    rng.fill_bytes(&mut salt);
    let kek = kdf::derive_key(&kdf_params, password, &salt)?;
    let payload = Zeroizing::new(object::encode(&KeyPayload {
        repo_id,
        keys: keys.clone(),
    }));
    let mut plain = Zeroizing::new(Vec::with_capacity(payload.len() + 1));
    object::append_payload(&mut plain, &payload, 0)?;
    let master = crypto::seal(&kek, &aad(b"master"), &plain, rng);
    let mut desc_plain = Vec::new();
    object::append_payload(&mut desc_plain, &object::encode(description), 0)?;
    let description = crypto::seal(&keys.data, &aad(b"description"), &desc_plain, rng);
    let file = KeyFile {
        kdf: kdf_params,
        salt,
        master,
        description,
    };
    let mut bytes = object::header(ObjectKind::Key).to_vec();
    bytes.extend_from_slice(&object::encode(&file));
    Ok(bytes)
}

/// Parses a key file's structure (no password needed).
pub fn parse(bytes: &[u8]) -> Result<KeyFile> {
    let body = object::strip_header(ObjectKind::Key, bytes)?;
    let file: KeyFile = object::decode(body, "key file")?;
    file.kdf.validate()?;
    Ok(file)
}

/// Unwraps the master keys with `password`. A wrong password is `ErrorKind::Password`.
pub fn unlock(file: &KeyFile, password: &[u8]) -> Result<(RepoId, MasterKeys)> {
    let kek: Key32 = kdf::derive_key(&file.kdf, password, &file.salt)?;
    let plain = Zeroizing::new(
        crypto::open(&kek, &aad(b"master"), &file.master)
            .map_err(|_| Error::new(ErrorKind::Password, "wrong password for this key"))?,
    );
    let payload = Zeroizing::new(object::decode_payload(&plain, 4096)?);
    let decoded: KeyPayload = object::decode(&payload, "key payload")?;
    Ok((decoded.repo_id, decoded.keys.clone()))
}

/// Reads the host, user and creation time sealed in a key file.
pub fn describe(file: &KeyFile, data_key: &Key32) -> Result<KeyDescription> {
    let plain = crypto::open(data_key, &aad(b"description"), &file.description)
        .map_err(|e| e.with_context("key description"))?;
    object::decode(
        &object::decode_payload(&plain, 64 * 1024)?,
        "key description",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn key_file_round_trip_and_wrong_password() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let keys = MasterKeys::random(&mut rng);
        let desc = KeyDescription {
            created: 1,
            hostname: "h".into(),
            username: "u".into(),
        };
        let bytes = create(
            b"pw",
            KdfParams::INSECURE_FOR_TESTS,
            RepoId([4; 32]),
            &keys,
            &desc,
            &mut rng,
        )
        .unwrap();
        let file = parse(&bytes).unwrap();
        let (repo_id, unlocked) = unlock(&file, b"pw").unwrap();
        assert_eq!(repo_id, RepoId([4; 32]));
        assert_eq!(unlocked, keys);
        assert_eq!(describe(&file, &keys.data).unwrap(), desc);
        assert_eq!(
            unlock(&file, b"nope").unwrap_err().kind(),
            ErrorKind::Password
        );
    }
}
