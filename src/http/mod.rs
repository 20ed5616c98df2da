//! HTTP/1.1 as the loop needs it: a request parser and chunked decoder that
//! are plain functions over bytes, and a response encoder.

pub mod chunked;
pub mod request;
pub mod response;
