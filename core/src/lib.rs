//! trialport-core: the export engine of clinical-trial data platforms.
//!
//! The engine runs exports as jobs on worker threads, keeps jobs, API keys and the audit trail in a
//! [`store::Store`] (every change committed with its audit event), writes artifacts to a [`sink::Sink`], reads
//! study data from [`source::DataSource`]s and checks every call's credential through one authorizer ([`auth`]).
//! Formats live in the `trialport-formats` crate and are registered explicitly.

pub mod access;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod codec;
pub mod crypto;
pub mod deid;
pub mod document;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod format;
pub mod fsutil;
pub mod hashing;
#[cfg(feature = "sqlite")]
pub mod home;
pub mod job;
pub mod jwt;
pub mod limit;
pub mod manifest;
pub mod meta;
pub mod name;
pub mod request;
pub mod signature;
pub mod signer;
pub mod sink;
pub mod source;
pub mod store;
pub mod study;

pub use error::{Error, ErrorCode, Result};
