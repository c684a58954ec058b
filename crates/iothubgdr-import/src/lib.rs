//! The import engine of iothubgdr: reads every device twin of an Azure IoT Hub, page by
//! page, and writes each device as an asset of the importing tenant.
//!
//! - [`Engine`] runs imports as jobs in a bounded pool with a per-tenant limit.
//! - [`mapping`] decides what an imported asset looks like.
//! - Figures for `/metrics` are registered in the registry given to [`Engine::new`].

mod engine;
pub mod mapping;
mod metrics;

pub use engine::{
    Engine, EngineConfig, ImportRequest, SubmitError, MSG_INVALID_SECRET, MSG_RESTARTED,
};
