//! Publishes notifications to the notifications topic with the official `google-cloud-pubsub`
//! publisher: created once at start-up, shared, flushed on shutdown. `PUBSUB_EMULATOR_HOST` is
//! honoured by pointing the client at the emulator with anonymous credentials.

use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;

use super::Notification;

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
        let inner = crate::pubsub::publisher(topic, emulator_host)
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
