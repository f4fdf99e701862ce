//! Construction of the official `google-cloud-pubsub` clients, honouring `PUBSUB_EMULATOR_HOST`: with an
//! emulator host the client talks plain HTTP to it with anonymous credentials, otherwise to Google with
//! Application Default Credentials.

use google_cloud_pubsub::client::{Publisher, Subscriber};

/// `http://HOST:PORT` for an emulator host given as `HOST:PORT` (or already as a URL).
pub fn emulator_endpoint(host: &str) -> String {
    if host.starts_with("http://") || host.starts_with("https://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    }
}

fn anonymous() -> google_cloud_auth::credentials::Credentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// A subscriber client (one per process).
pub async fn subscriber(emulator_host: Option<&str>) -> Result<Subscriber, String> {
    let mut builder = Subscriber::builder();
    if let Some(host) = emulator_host {
        builder = builder
            .with_endpoint(emulator_endpoint(host))
            .with_credentials(anonymous());
    }
    builder.build().await.map_err(|e| e.to_string())
}

/// A publisher for one topic (one per process and topic).
pub async fn publisher(topic: &str, emulator_host: Option<&str>) -> Result<Publisher, String> {
    let mut builder = Publisher::builder(topic.to_owned());
    if let Some(host) = emulator_host {
        builder = builder
            .with_endpoint(emulator_endpoint(host))
            .with_credentials(anonymous());
    }
    builder.build().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_hosts_become_http_endpoints() {
        assert_eq!(emulator_endpoint("127.0.0.1:8085"), "http://127.0.0.1:8085");
        assert_eq!(
            emulator_endpoint("http://localhost:1"),
            "http://localhost:1"
        );
    }
}
