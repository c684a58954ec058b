//! Azure IoT Hub service client: connection strings, shared access signatures, and a
//! device twin query that pages safely (retries within a budget, same continuation token
//! on retry, pacing under the hub's query quota), reaching only the hosts the outbound policy
//! allows and reading no more than a real hub can send. For large hubs, the jobs API's
//! export ([`HubClient::create_export_job`]) writes the registry to the customer's blob
//! container, read back line by line ([`BlobClient`], [`ExportedDevices`]).

pub mod blob;
mod client;
mod connection_string;
mod error;
pub mod export;
mod failure;
mod jobs;
mod pacing;
pub mod partition;
mod query;
mod sas;
mod twin;

pub use blob::{BlobClient, BlobContainerSas, BlobOptions, SasUrlError};
pub use client::{
    ClientOptions, HubClient, RequestObserver, RequestOutcome, API_VERSION, MAX_PAGE_BYTES,
    MAX_PAGE_SIZE,
};
pub use connection_string::{ConnectionString, ConnectionStringError, ConnectionStringForm};
pub use error::{HubError, HubErrorKind};
pub use export::{ExportError, ExportedDevices, EXPORT_BLOB_NAME};
pub use iothubgdr_outbound::{HostPattern, Refusal};
pub use jobs::{ExportJob, JobStatus};
pub use partition::{IdRange, Partition};
pub use query::{overshoot_limit, DevicePages};
pub use sas::generate_sas_token;
pub use twin::{decode_device_count, decode_twin_page, Capabilities, Twin};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_static<T: Send + 'static>() {}
    fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn pager_and_client_can_move_into_tasks() {
        assert_send_static::<DevicePages>();
        assert_send_sync_clone::<HubClient>();
        assert_send_sync_clone::<ClientOptions>();
        assert_send_sync_clone::<ConnectionString>();
        assert_send_sync_clone::<BlobClient>();
        assert_send_static::<BlobContainerSas>();
        assert_send_static::<ExportedDevices>();
    }
}
