//! Construction of the official `google-cloud-pubsub` clients, honouring `PUBSUB_EMULATOR_HOST`: with an
//! emulator host the client talks plain HTTP to it with anonymous credentials, otherwise to Google with
//! Application Default Credentials. [`NotificationPublisher`] is the notification sink port over the
//! notifications topic.

use futures::FutureExt;
use futures::future::BoxFuture;
use google_cloud_pubsub::client::{Publisher, Subscriber};
use google_cloud_pubsub::model::Message;

use crate::notify::Notification;
use crate::ports::{NotificationSink, PublishError};

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

/// A notification could not be published.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The publisher could not be created.
    #[error("cannot create the Pub/Sub publisher for {topic}: {message}")]
    Connect {
        /// Topic.
        topic: String,
        /// Why.
        message: String,
    },
    /// Publishing failed (retryable: the delivery should be redelivered).
    #[error("publishing to {topic} failed: {message}")]
    Publish {
        /// Topic.
        topic: String,
        /// Why.
        message: String,
    },
}

/// The notifications topic publisher.
pub struct NotificationPublisher {
    topic: String,
    inner: Publisher,
}

impl std::fmt::Debug for NotificationPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationPublisher")
            .field("topic", &self.topic)
            .finish()
    }
}

impl NotificationPublisher {
    /// Connects to `topic` (`projects/P/topics/T`); to the emulator at `emulator_host` when given.
    pub async fn connect(topic: &str, emulator_host: Option<&str>) -> Result<Self, NotifyError> {
        let inner =
            publisher(topic, emulator_host)
                .await
                .map_err(|message| NotifyError::Connect {
                    topic: topic.to_owned(),
                    message,
                })?;
        Ok(Self {
            topic: topic.to_owned(),
            inner,
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes one notification with its filter attributes; returns the message id.
    pub async fn publish(&self, notification: &Notification) -> Result<String, NotifyError> {
        let data = serde_json::to_vec(notification).map_err(|e| NotifyError::Publish {
            topic: self.topic.clone(),
            message: e.to_string(),
        })?;
        let message = Message::new()
            .set_data(data)
            .set_attributes(notification.attributes());
        self.inner
            .publish(message)
            .await
            .map_err(|e| NotifyError::Publish {
                topic: self.topic.clone(),
                message: format!("{e:?}"),
            })
    }

    /// Sends everything buffered (call on shutdown).
    pub async fn flush(&self) {
        self.inner.flush().await;
    }
}

impl NotificationSink for NotificationPublisher {
    fn publish<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        async move {
            NotificationPublisher::publish(self, notification)
                .await
                .map_err(|e| PublishError {
                    destination: self.topic.clone(),
                    message: e.to_string(),
                })
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        NotificationPublisher::flush(self).boxed()
    }
}
