//! HTTP/1.1 as the server needs it: a request parser and chunked decoder
//! that are plain functions over bytes, a connection's input state, the
//! route of a request, the upgrade checks, and the response encoder.

pub mod chunked;
pub mod conn;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
pub mod upgrade;
