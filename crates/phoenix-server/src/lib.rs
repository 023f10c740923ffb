//! The Phoenix server: the Admin, Ingestion and Query gateways (axum), the web console, auth
//! extractors and console sessions, the error envelope, and the application that binds listeners and
//! shuts down gracefully.
#![forbid(unsafe_code)]

pub mod admin;
pub mod apidoc;
pub mod app;
pub mod auth;
pub mod body;
pub mod console;
pub mod deliver;
pub mod error;
pub mod ingest;
pub mod listener;
pub mod ops;
pub mod query;
pub mod ratelimit;
pub mod session;
pub mod shared;
pub mod state;
pub mod throttle;

pub use app::{Application, BindError, Gateway, openapi};
pub use error::ApiError;
pub use state::{AppState, GatewayListen, ServerConfig};
