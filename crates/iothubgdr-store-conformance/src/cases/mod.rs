//! Every case of the suite. Each takes a fresh [`TestDatabase`](crate::TestDatabase) and
//! panics on a broken rule.

mod identity;
mod history;
mod imports;
mod keys;
mod replicas;
mod resources;
mod workers;

pub use identity::*;
pub use history::*;
pub use imports::*;
pub use keys::*;
pub use replicas::*;
pub use resources::*;
pub use workers::*;
