//! cloudvol: a Kubernetes operator for block-storage volumes, volume images and
//! image sharing on NHN Cloud, OpenStack and Samsung Cloud Platform.
pub mod api;
pub mod cloud;
pub mod controller;
pub mod logging;
pub mod metrics;
pub mod operator;
