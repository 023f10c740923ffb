//! Phoenix's domain core: identifiers, the leaderboard configuration model and its validation, and the
//! scoring expression language. Pure logic: no I/O, no async runtime, so it is fast to test and can be
//! shared by every storage backend and gateway.
#![forbid(unsafe_code)]

pub mod access;
pub mod achievement;
pub mod condition;
pub mod config;
pub mod coupon;
pub mod engine;
pub mod error;
pub mod event;
pub mod expr;
pub mod field;
pub mod ids;
pub mod intern;
pub mod rank;
pub mod reward;
pub mod webhook;
pub mod window;

pub use error::ValidationError;
