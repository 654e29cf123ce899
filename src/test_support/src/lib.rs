//! The workspace's one test kit: certificates and temporary files for every
//! crate's tests. Tests only: panics on failure are the point (a test that
//! cannot make its certificate cannot say anything).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod certs;
mod files;

pub use certs::{CertPem, TestCa, Validity, dev_cert, dev_key, self_signed};
pub use files::TempFiles;
