//! The proxy between a real `curl` (or a raw socket) and a real upstream,
//! all on loopback.

mod harness;

mod chain;
mod connect;
mod faults;
mod fixtures;
mod http;
mod https;
mod limits;
mod logs;
mod shutdown;
