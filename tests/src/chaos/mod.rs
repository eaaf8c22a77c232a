//! The chaos test's machinery (`tests/chaos.rs`): [`fleet`] sends requests to instances that
//! are killed and restarted under them; [`client`] is what each pushing client does.

pub mod client;
pub mod fleet;
