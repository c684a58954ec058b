//! Every case of the suite. Each takes a fresh [`TestDatabase`](crate::TestDatabase) and
//! panics on a broken rule.

mod events;
mod history;
mod identity;
mod imports;
mod keys;
mod replicas;
mod resources;
mod workers;

pub use events::*;
pub use history::*;
pub use identity::*;
pub use imports::*;
pub use keys::*;
pub use replicas::*;
pub use resources::*;
pub use workers::*;
