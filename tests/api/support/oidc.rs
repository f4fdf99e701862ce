//! Google's OIDC side of push authentication, stood in for on 127.0.0.1: the key endpoint `serve`
//! fetches to verify push tokens, the test keys in `tests/fixtures/oidc/`, and tokens signed with them.

use serde_json::Value;

/// The key id the fixture key pair `signing-private.pem` / `jwks.json` is published under.
pub const KID: &str = "test-signing-key-1";

/// A file of `tests/fixtures/oidc/` (`jwks.json`, `signing-private.pem`, `other-private.pem`).
pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/oidc")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// An RS256 token of `claims`, signed with the PEM key `key_pem` under the key id `kid`.
pub fn token(key_pem: &str, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).expect("an RSA PEM key"),
    )
    .expect("token signed")
}

/// Serves a JWKS document on 127.0.0.1 until the test's runtime ends; its URL.
pub async fn key_server(jwks: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let body = jwks.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: public, max-age=3600\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/oauth2/v3/certs")
}
