//! The embedded default wiring: an engine on a home directory with every format of this build.
//!
//! ```no_run
//! # fn main() -> trialport_core::Result<()> {
//! let engine = trialport_formats::home::engine_builder(std::path::Path::new("/var/lib/trialport"))?.build()?;
//! # drop(engine);
//! # Ok(())
//! # }
//! ```

use crate::source::DirectorySource;
use std::path::Path;
use std::sync::Arc;
use trialport_core::engine::{Engine, EngineBuilder};
use trialport_core::home::Home;
use trialport_core::jwt::{JwtConfig, JwtVerifier};
use trialport_core::Result;

/// An engine builder wired to the home in `home_dir` (its SQLite store, audit log, artifact directory and
/// pepper), with [`crate::default_formats`], a [`DirectorySource`] over the configuration's `source` directory if
/// it names one, and a JWT verifier when the configuration has `jwt` settings. Callers may still change the
/// builder (workers, clock, more sources) before `build()`.
///
/// # Errors
/// EXP001 `not_a_home` when `home_dir` is not a home; EXP002 for an unreadable configuration or unusable JWT
/// settings; EXP005 for I/O.
pub fn engine_builder(home_dir: &Path) -> Result<EngineBuilder> {
    engine_builder_with_jwt(home_dir, None)
}

/// As [`engine_builder`], but with the JWT settings `jwt` in place of the home's when given (key paths relative
/// to the home): the home's own settings are then not read, so a home whose key file is gone still opens.
///
/// # Errors
/// As [`engine_builder`].
pub fn engine_builder_with_jwt(home_dir: &Path, jwt: Option<&JwtConfig>) -> Result<EngineBuilder> {
    let home = Home::open(home_dir)?;
    // Encoders spool inside the home, never in the system's temporary directory.
    crate::spool::set_dir(Some(crate::spool::prepare(home_dir)?));
    let mut builder = Engine::builder()
        .formats(crate::default_formats())
        .home(home_dir)?;
    if let Some(dir) = &home.config().source {
        builder = builder.source(Arc::new(DirectorySource::new(dir)));
    }
    let verifier = match jwt {
        Some(config) => Some(JwtVerifier::from_config(config, home_dir)?),
        None => home.jwt_verifier()?,
    };
    if let Some(verifier) = verifier {
        builder = builder.jwt(verifier);
    }
    Ok(builder)
}
