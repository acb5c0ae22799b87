//! HTTP-level tests of every rule the emulator implements. Each test starts
//! its own emulator on 127.0.0.1:0 and waits on states with a deadline.

mod admin;
mod binary;
mod common;
mod from_image;
mod identity;
mod images;
mod retype;
mod scp;
mod upload;
mod volumes;
