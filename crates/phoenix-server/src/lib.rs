//! The Phoenix server: axum gateways (Admin now; Ingestion and Query with their issues), auth
//! extractors, the error envelope, and the application that binds listeners and shuts down gracefully.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod error;
pub mod ingest;
pub mod ops;
pub mod query;
pub mod state;

pub use app::{Application, BindError, Gateway, openapi};
pub use error::ApiError;
pub use state::{AppState, GatewayListen, ServerConfig};
