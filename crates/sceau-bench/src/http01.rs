//! One shared http-01 responder for every virtual client (RFC 8555 §8.3).
//!
//! Invariants:
//! - It serves only `GET /.well-known/acme-challenge/{token}` for tokens currently in the map,
//!   with the key authorization as the body; anything else is 404, so a CA that fetches the
//!   wrong token fails validation as it should.
//! - A token is in the map from just before its challenge is answered until its authorization
//!   leaves `pending`; [`KeyAuthorizations`] is the only shared state between clients.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::BenchError;

const PREFIX: &str = "/.well-known/acme-challenge/";

/// token → key authorization (`token || '.' || base64url(JWK thumbprint)`, RFC 8555 §8.1).
#[derive(Clone, Default)]
pub struct KeyAuthorizations(Arc<Mutex<HashMap<String, String>>>);

impl KeyAuthorizations {
    pub fn insert(&self, token: &str, key_authorization: String) {
        self.0
            .lock()
            .expect("map lock")
            .insert(token.to_owned(), key_authorization);
    }

    pub fn remove(&self, token: &str) {
        self.0.lock().expect("map lock").remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0.lock().expect("map lock").get(token).cloned()
    }
}

/// Binds 127.0.0.1:`port` and serves the map until the runtime ends. Returns the bound port
/// (useful with port 0).
pub async fn serve(port: u16, map: KeyAuthorizations) -> Result<u16, BenchError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| BenchError::Listener { port, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| BenchError::Listener { port, source })?
        .port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let map = map.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let map = map.clone();
                    async move { Ok::<_, Infallible>(answer(&map, &req)) }
                });
                // A CA that hangs up mid-request is its own problem; nothing to count here.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn answer(map: &KeyAuthorizations, req: &Request<Incoming>) -> Response<String> {
    let found = (req.method() == Method::GET)
        .then(|| req.uri().path().strip_prefix(PREFIX))
        .flatten()
        .and_then(|token| map.get(token));
    let mut response = match found {
        Some(key_authorization) => Response::new(key_authorization),
        None => {
            let mut r = Response::new(String::new());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_known_tokens_only() {
        let map = KeyAuthorizations::default();
        map.insert("tok1", "tok1.thumb".into());
        let port = serve(0, map.clone()).await.unwrap();
        // reqwest is built without a default crypto provider; plain HTTP still needs one set.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = |p: &str| format!("http://127.0.0.1:{port}{p}");

        let ok = http
            .get(url("/.well-known/acme-challenge/tok1"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), "tok1.thumb");

        for path in [
            "/.well-known/acme-challenge/tok2",
            "/tok1",
            "/.well-known/acme-challenge/",
        ] {
            assert_eq!(
                http.get(url(path)).send().await.unwrap().status(),
                404,
                "{path}"
            );
        }
        assert_eq!(
            http.post(url("/.well-known/acme-challenge/tok1"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );

        map.remove("tok1");
        assert_eq!(
            http.get(url("/.well-known/acme-challenge/tok1"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
}
