//! The import engine of iothubgdr: reads every device twin of an Azure IoT Hub, page by
//! page, and writes each device as an asset of the importing tenant.
//!
//! - [`Engine`] (engine.rs) accepts, cancels and shuts down imports.
//! - schedule.rs claims pending imports under limits counted in the database.
//! - pipeline/ runs one job: reader (hub pages), [`mapping`] (twin → asset), writer.
//!   Devices come from the twin query ([`source`]) or, when the import names a blob
//!   container, from an export job ([`export_source`]).
//! - housekeeping.rs keeps the lease, reaps stopped replicas, notices remote cancels.
//! - Figures for `/metrics` are registered in the registry given to [`Engine::new`].

mod engine;
pub mod export_source;
mod housekeeping;
pub mod mapping;
mod metrics;
mod pipeline;
mod schedule;
pub mod source;

pub use engine::{
    Engine, EngineConfig, ExportJobState, ImportRequest, SubmitError, MSG_INVALID_SECRET,
    MSG_RESTARTED,
};
pub use iothubgdr_store::LimitScope;
