//! SIGINT and SIGTERM: the first sets a flag that long-running work polls, so it can stop
//! cleanly (end backup mode, index what was stored, leave no partial snapshot); a second one
//! ends the process at once.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::error::{Error, Result};

pub fn install() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this signal set it.
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
            .map_err(|e| Error::internal(format!("installing the signal handler: {e}")))?;
    }
    Ok(flag)
}
