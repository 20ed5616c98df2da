//! Integration tests: one behaviour per module, all through real sockets
//! against an in-process server on 127.0.0.1:0 or the real binary.
//!
//! They are one test binary (not one per file) so a release build links
//! once instead of once per file.

mod common;

mod access_events;
mod access_jwt_claims;
mod access_limits;
mod access_proxies;
mod access_refresh;
mod access_revocation;
mod auth_jwt;
mod auth_local_push;
mod auth_netns;
mod auth_origins;
mod auth_push_key;
mod auth_refusal_logs;
mod auth_token_file;
mod bench_smoke;
mod binary_cli;
mod cluster_delivery;
mod cluster_history;
mod cluster_limits;
mod cluster_outage;
mod cluster_presence;
mod cluster_protocol;
mod deploy_activation;
mod deploy_cli;
mod deploy_log_json;
mod deploy_units;
mod deploy_wiring;
mod fuzz_regressions;
mod history;
mod history_keys;
mod history_sse;
mod http_bodies;
mod http_curl;
mod http_errors;
mod http_expect_continue;
mod http_half_close;
mod http_hostile;
mod http_keepalive_pipelining;
mod http_timeouts;
mod limits;
mod metrics;
mod presence;
mod push_big_fanout;
mod push_fanout;
mod push_limits;
mod redis_harness;
mod resilience_close_grace;
mod resilience_emfile;
mod resilience_logging;
mod seed_demo_flow;
mod shutdown_signal;
mod sse;
mod static_files;
mod token_expiry;
mod ws_close_codes;
mod ws_close_reasons;
mod ws_drop;
mod ws_envelope;
mod ws_handle_api;
mod ws_hostile;
mod ws_ids;
mod ws_name_limits;
mod ws_ping_and_close;
mod ws_register;
mod ws_unregister;
