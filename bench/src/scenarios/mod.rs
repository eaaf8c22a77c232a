//! One module per benchmark scenario.

pub mod cold_start;
