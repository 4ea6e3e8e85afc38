//! One module per command (or command family). Each takes its parsed arguments and
//! the global options, calls the libraries, and renders the result.

pub mod app;
pub mod audit;
pub mod cloud;
pub mod explain;
pub mod firewall;
pub mod import;
pub mod lab;
pub mod list;
pub mod metrics;
pub mod ports;
pub mod probe;
pub mod safety;
pub mod status;
