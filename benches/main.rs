//! Criterion micro-benchmarks of the hot paths (`cargo bench --bench main`; see
//! `benches/BENCHMARKS.md`). Under `cargo test --all-targets` criterion runs each once.
//!
//! - jwt: decode + verify a posted account JWT, the full POST validation, parse-only (load path),
//!   and 1,000 tokens verified in batches (`decode_many`, a replica's sync) against 1,000 `decode`s
//! - store: index lookup, memory-backed put (writer thread round trip), durable sled put (fsync)
//! - http: `GET /jwt/v1/accounts/<key>` through the whole actix app (routing, middleware,
//!   handler, rendering) with `actix_web::test`, plus a 304 and a 404

use actix_web::test::{self, TestRequest};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use nats_account_server::http::render::{self, ReadOpts};
use nats_account_server::jwt::{self, encode, trust::Operator};
use nats_account_server::state::{AppState, HttpOptions, Trust};
use nats_account_server::store::{Kind, Policy, Store};
use nats_account_server::verify;
use nkeys::KeyPair;
use serde_json::json;
use std::time::Duration;

struct Fixture {
    trust: Trust,
    /// `(key, jwt)` of distinct accounts.
    accounts: Vec<(String, String)>,
    /// Two versions of one account with the same `iat` and different bytes: put in turn with
    /// [`Policy::MirrorPrimary`], each replaces the other, so every put writes.
    flip: [(String, String); 2],
}

fn fixture(n: usize) -> Fixture {
    let op = KeyPair::new_operator();
    let op_jwt = encode::operator(&op, "bench", &[], None);
    let accounts = (0..n)
        .map(|i| {
            let key = KeyPair::new_account().public_key();
            let token = encode::account(&op, &key, &format!("acct-{i}"), json!({}));
            (key, token)
        })
        .collect();
    let key = KeyPair::new_account().public_key();
    let iat = jwt::now_unix();
    let version = |name: &str| {
        let token = encode::sign(
            json!({ "name": name, "sub": key, "iat": iat, "nats": { "type": "account", "version": 2 } }),
            &op,
        );
        (key.clone(), token)
    };
    Fixture {
        trust: Trust {
            operator: Some(Operator::from_jwt(&op_jwt).expect("operator")),
            system_account: None,
            cluster_account: None,
        },
        accounts,
        flip: [version("a"), version("b")],
    }
}

/// The shared fixture: 10,000 accounts under `cargo bench`, a few under `cargo test` (where
/// criterion runs each benchmark once and only has to finish quickly).
fn shared() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let bench = std::env::args().any(|a| a == "--bench");
        fixture(if bench { 10_000 } else { 64 })
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A memory store holding every fixture account.
fn loaded_store(rt: &tokio::runtime::Runtime, f: &Fixture) -> Store {
    rt.block_on(loaded_store_async(f))
}

fn bench_jwt(c: &mut Criterion) {
    let f = shared();
    let (key, token) = &f.accounts[0];
    let mut g = c.benchmark_group("jwt");
    g.bench_function("decode_verify_account", |b| {
        b.iter(|| jwt::decode_account(black_box(token), jwt::now_unix()).expect("valid"))
    });
    g.bench_function("validate_post", |b| {
        b.iter(|| {
            verify::post::account(f.trust.operator.as_ref(), key, black_box(token.as_bytes()))
                .expect("valid")
        })
    });
    let decoded = jwt::decode(token).expect("valid");
    g.bench_function("account_rules", |b| {
        b.iter(|| jwt::check_account_rules(black_box(&decoded)).expect("valid"))
    });
    g.bench_function("parse_unverified", |b| {
        b.iter(|| jwt::parse_unverified(black_box(token)).expect("valid"))
    });
    g.bench_function("is_account_key", |b| {
        b.iter(|| jwt::is_account_key(black_box(key)))
    });
    // A replica's sync verifies every token it receives; these compare batch verification with
    // single `decode`s over the same 1,000 operator-signed tokens (per token: time / 1,000).
    // Each iteration takes tens of milliseconds, so fewer samples keep the run short.
    let many: Vec<&str> = f
        .accounts
        .iter()
        .take(1000)
        .map(|(_, t)| t.as_str())
        .collect();
    g.sample_size(20);
    g.bench_function("decode_many_1000", |b| {
        b.iter(|| {
            let out = jwt::decode_many(black_box(&many));
            assert!(out.iter().all(Result::is_ok));
            out
        })
    });
    // The signature check alone, by group size (`jwt::batch::GROUP`): 1,024 signatures of
    // ~800-byte messages, verified in groups of `size` (per signature: time / 1,024).
    {
        use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let vk: VerifyingKey = sk.verifying_key();
        let msgs: Vec<Vec<u8>> = (0..1024u32)
            .map(|i| {
                let mut m = vec![b'x'; 800];
                m[..4].copy_from_slice(&i.to_be_bytes());
                m
            })
            .collect();
        let sigs: Vec<_> = msgs.iter().map(|m| sk.sign(m)).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let keys = vec![vk; 1024];
        for size in [64usize, 256, 1024] {
            g.bench_function(format!("verify_batch_1024_in_{size}"), |b| {
                b.iter(|| {
                    for ((m, s), k) in refs
                        .chunks(size)
                        .zip(sigs.chunks(size))
                        .zip(keys.chunks(size))
                    {
                        ed25519_dalek::verify_batch(m, s, k).expect("valid");
                    }
                })
            });
        }
        g.bench_function("verify_single_1024", |b| {
            b.iter(|| {
                for (m, s) in refs.iter().zip(&sigs) {
                    vk.verify_strict(m, s).expect("valid");
                }
            })
        });
    }
    g.bench_function("decode_1000", |b| {
        b.iter(|| {
            // Collected like decode_many's results, so both pay for the same allocations.
            many.iter()
                .map(|t| jwt::decode(black_box(t)).expect("valid"))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

/// The flip benchmarks alternate two versions with the same `iat`, so every put stores:
/// a primary refuses the second of a second (409), a replica mirroring its primary takes it.
const MIRROR: Policy = Policy::MirrorPrimary;

fn bench_store(c: &mut Criterion) {
    let rt = runtime();
    let f = shared();
    let store = loaded_store(&rt, f);
    let keys: Vec<&str> = f.accounts.iter().map(|(k, _)| k.as_str()).collect();
    let flip = [
        jwt::decode(&f.flip[0].1).expect("own token"),
        jwt::decode(&f.flip[1].1).expect("own token"),
    ];
    let mut g = c.benchmark_group("store");
    let mut i = 0usize;
    g.bench_function("get_10k", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            store
                .get(Kind::Account, black_box(keys[i]))
                .expect("present")
        })
    });
    let mut n = 0usize;
    g.bench_function("put_memory", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.put_with(Kind::Account, &f.flip[0].0, &flip[n % 2], MIRROR))
                .expect("put")
        })
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let sled = Store::open_sled(&dir.path().join("data")).expect("sled");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.bench_function("put_sled_durable", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(sled.put_with(Kind::Account, &f.flip[0].0, &flip[n % 2], MIRROR))
                .expect("put")
        })
    });
    g.finish();
}

fn bench_http(c: &mut Criterion) {
    let f = shared();
    let sys = actix_web::rt::System::new();
    let store = sys.block_on(loaded_store_async(f));
    let state = AppState::standalone(
        store,
        Trust {
            operator: f.trust.operator.clone(),
            system_account: None,
            cluster_account: None,
        },
        HttpOptions {
            max_age: Duration::from_secs(60),
            max_body: 1 << 20,
            allow_delete: false,
        },
    );
    let app = sys.block_on(test::init_service(nats_account_server::http::app(
        state.clone(),
    )));
    let paths: Vec<String> = f
        .accounts
        .iter()
        .map(|(k, _)| format!("/jwt/v1/accounts/{k}"))
        .collect();
    let etag = state
        .store
        .get(Kind::Account, &f.accounts[0].0)
        .expect("present")
        .etag_str();
    let mut g = c.benchmark_group("http");
    let mut i = 0usize;
    g.bench_function("get_account_200", |b| {
        b.iter_batched(
            || {
                i = (i + 7919) % paths.len();
                TestRequest::get().uri(&paths[i]).to_request()
            },
            |req| {
                let res = sys.block_on(test::call_service(&app, req));
                assert!(res.status().is_success());
                res
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("get_account_304", |b| {
        b.iter_batched(
            || {
                TestRequest::get()
                    .uri(&paths[0])
                    .insert_header(("If-None-Match", etag.as_str()))
                    .to_request()
            },
            |req| {
                let res = sys.block_on(test::call_service(&app, req));
                assert_eq!(res.status().as_u16(), 304);
                res
            },
            BatchSize::SmallInput,
        )
    });
    let unknown = format!("/jwt/v1/accounts/{}", KeyPair::new_account().public_key());
    g.bench_function("get_account_404", |b| {
        b.iter_batched(
            || TestRequest::get().uri(&unknown).to_request(),
            |req| {
                let res = sys.block_on(test::call_service(&app, req));
                assert_eq!(res.status().as_u16(), 404);
                res
            },
            BatchSize::SmallInput,
        )
    });
    // The rendering step alone (headers and body of a 200).
    let entry = state
        .store
        .get(Kind::Account, &f.accounts[0].0)
        .expect("present");
    let req = TestRequest::get().uri(&paths[0]).to_http_request();
    let opts = ReadOpts::default();
    g.bench_function("render_token", |b| {
        b.iter(|| {
            render::token(black_box(&entry), &opts, &req, Duration::from_secs(60)).expect("ok")
        })
    });
    g.finish();
}

async fn loaded_store_async(f: &Fixture) -> Store {
    let store = Store::memory(true);
    let items = f
        .accounts
        .iter()
        .map(|(k, t)| (Kind::Account, k.clone(), jwt::decode(t).expect("own token")))
        .collect();
    store.put_many(items, Vec::new()).await.expect("load");
    store
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_jwt, bench_store, bench_http
}
criterion_main!(benches);
