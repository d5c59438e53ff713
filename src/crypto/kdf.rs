//! Password → key-encryption key, by Argon2id with parameters stored per key file.

use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use super::Key32;
use crate::error::{Error, Result};

/// Argon2id cost parameters, stored in the clear in each key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// Upper bounds accepted when reading a key file: a hostile key file must not make us
/// allocate or spin without bound.
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_ITERATIONS: u32 = 64;
const MAX_PARALLELISM: u32 = 16;

/// The default memory cost (RFC 9106's memory-constrained choice), and the time the default
/// parameters aim for. 64 MiB with several passes costs an attacker about what 256 MiB with one
/// pass would, while keeping pgcairn's own peak memory (it derives a key on every run, including
/// every archive-push) under its 100 MiB budget.
const DEFAULT_MEMORY_KIB: u32 = 64 * 1024;
const TARGET_TIME: Duration = Duration::from_millis(500);

/// Name of the environment variable that selects the test-only parameters.
pub const TEST_KDF_ENV: &str = "PGCAIRN_INSECURE_TEST_KDF";

impl KdfParams {
    /// Deliberately weak parameters for test suites, which derive hundreds of keys. Selected only
    /// through [`TEST_KDF_ENV`]; never a default.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    /// Parameters for a new key: the test-only setting if it was asked for, else parameters
    /// calibrated on this machine to take about [`TARGET_TIME`] with 64 MiB.
    pub fn for_new_key() -> Result<Self> {
        if std::env::var_os(TEST_KDF_ENV).is_some_and(|v| v == "1") {
            return Ok(Self::INSECURE_FOR_TESTS);
        }
        Self::calibrate()
    }

    /// Times one and three passes at the default memory cost (the difference is the cost of
    /// a pass without the one-time cost of allocating and touching the memory) and picks the
    /// number of passes that reaches the target time; if one pass is already too slow, less
    /// memory.
    fn calibrate() -> Result<Self> {
        let time = |iterations| -> Result<Duration> {
            let params = KdfParams {
                memory_kib: DEFAULT_MEMORY_KIB,
                iterations,
                parallelism: 1,
            };
            let started = Instant::now();
            derive_key(&params, b"calibration", &[0u8; 32])?;
            Ok(started.elapsed())
        };
        let one = time(1)?.as_secs_f64();
        let three = time(3)?.as_secs_f64();
        let per_pass = ((three - one) / 2.0).max(1e-4);
        let fixed = (one - per_pass).max(0.0);
        let target = TARGET_TIME.as_secs_f64();
        if one > target {
            let memory_kib = ((f64::from(DEFAULT_MEMORY_KIB) * target / one) as u32).max(19 * 1024);
            return Ok(KdfParams {
                memory_kib,
                iterations: 1,
                parallelism: 1,
            });
        }
        let iterations = ((target - fixed) / per_pass).round() as u32;
        Ok(KdfParams {
            memory_kib: DEFAULT_MEMORY_KIB,
            iterations: iterations.clamp(1, 16),
            parallelism: 1,
        })
    }

    /// Refuses parameters outside what any pgcairn would write.
    pub fn validate(&self) -> Result<()> {
        let ok = (1..=MAX_PARALLELISM).contains(&self.parallelism)
            && (8 * self.parallelism..=MAX_MEMORY_KIB).contains(&self.memory_kib)
            && (1..=MAX_ITERATIONS).contains(&self.iterations);
        if ok {
            Ok(())
        } else {
            Err(Error::integrity(format!(
                "Argon2id parameters out of range (memory {} KiB, {} passes, {} lanes)",
                self.memory_kib, self.iterations, self.parallelism
            )))
        }
    }
}

/// Derives the 256-bit key-encryption key from a password and salt.
pub fn derive_key(params: &KdfParams, password: &[u8], salt: &[u8; 32]) -> Result<Key32> {
    params.validate()?;
    let argon_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| Error::integrity(format!("Argon2id parameters rejected: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut key = Key32([0u8; 32]);
    argon
        .hash_password_into(password, salt, &mut key.0)
        .map_err(|e| Error::internal(format!("Argon2id failed: {e}")))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_depends_on_password_salt_and_params() {
        let p = KdfParams::INSECURE_FOR_TESTS;
        let a = derive_key(&p, b"pw", &[1; 32]).unwrap();
        assert_eq!(a, derive_key(&p, b"pw", &[1; 32]).unwrap());
        assert_ne!(a, derive_key(&p, b"pw2", &[1; 32]).unwrap());
        assert_ne!(a, derive_key(&p, b"pw", &[2; 32]).unwrap());
        let p2 = KdfParams { iterations: 2, ..p };
        assert_ne!(a, derive_key(&p2, b"pw", &[1; 32]).unwrap());
    }

    #[test]
    fn hostile_parameters_are_refused_before_allocating() {
        let huge = KdfParams {
            memory_kib: u32::MAX,
            iterations: 1,
            parallelism: 1,
        };
        assert!(derive_key(&huge, b"pw", &[0; 32]).is_err());
        let zero = KdfParams {
            memory_kib: 64,
            iterations: 0,
            parallelism: 1,
        };
        assert!(zero.validate().is_err());
    }
}
