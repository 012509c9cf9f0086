//! NATS JetStream, the log stream between API servers and the aggregator: its URL, reading a
//! stream's messages in sequence order, and publishing that waits for the server's ack.
//!
//! Callers are synchronous (timely workers, the shipper's loop): each [`Connection`] owns a small
//! runtime of its own and blocks on it.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

/// How long each request to the server may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Messages asked for at a time when reading.
const FETCH_MESSAGES: usize = 64;

/// `nats://[USER:PASS@]HOST[:PORT]/STREAM[?subject=FILTER]`.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamUrl {
    /// `host:port`.
    pub server: String,
    credentials: Option<(String, String)>,
    pub stream: String,
    /// Reading: only the messages of these subjects (wildcards allowed). Publishing: the prefix of
    /// the subjects written to.
    pub subject: Option<String>,
}

impl std::fmt::Debug for StreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

impl StreamUrl {
    /// Whether a command-line input names a stream rather than a path.
    pub fn is_stream(input: &str) -> bool {
        input.starts_with("nats://")
    }

    pub fn parse(text: &str) -> anyhow::Result<StreamUrl> {
        let text = text.trim();
        // An error names the URL without anything before an `@` (credentials, or what a parser
        // could take for a host when a password holds an unescaped `/`, `?` or `#`).
        let shown = match text.rfind('@') {
            Some(at) => format!("nats://…@{}", &text[at + 1..]),
            None => text.to_string(),
        };
        let fail = |why: &str| {
            anyhow::anyhow!(
                "{shown}: {why} (expected {}; characters such as / ? # @ in a password are \
                 written %2F %3F %23 %40)",
                Self::FORM
            )
        };
        let url = url::Url::parse(text).map_err(|e| fail(&format!("not a URL: {e}")))?;
        if url.scheme() != "nats" {
            return Err(fail("not a nats:// URL"));
        }
        let host = url.host_str().filter(|h| !h.is_empty());
        let host = host.ok_or_else(|| fail("no host"))?;
        let server = format!("{host}:{}", url.port().unwrap_or(4222));
        let stream = url.path().trim_start_matches('/').to_string();
        let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if stream.is_empty() || !stream.chars().all(word) {
            return Err(fail(
                "a stream name is one word of ASCII letters, digits, - and _",
            ));
        }
        let mut subject = None;
        for (name, value) in url.query_pairs() {
            if name != "subject" || subject.is_some() {
                return Err(fail("the only query parameter is subject=SUBJECT, once"));
            }
            if value.split('.').any(str::is_empty) || value.contains(char::is_whitespace) {
                return Err(fail(
                    "a subject is tokens separated by single dots, without spaces",
                ));
            }
            subject = Some(value.into_owned());
        }
        let credentials = (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_string());
            (decode(url.username()), decode(url.password().unwrap_or("")))
        });
        Ok(StreamUrl {
            server,
            credentials,
            stream,
            subject,
        })
    }

    /// Refuses a subject prefix with wildcards: published subjects are literal.
    pub fn for_publishing(self) -> anyhow::Result<StreamUrl> {
        if let Some(subject) = &self.subject {
            anyhow::ensure!(
                !subject.contains(['*', '>']),
                "{}: ?subject= names the prefix of the subjects published to, without * or >",
                self.key()
            );
        }
        Ok(self)
    }

    const FORM: &str = "nats://[USER:PASS@]HOST[:PORT]/STREAM[?subject=SUBJECT]";

    /// The URL without credentials: how the stream is named in output and in the progress table.
    pub fn key(&self) -> String {
        let mut key = format!("nats://{}/{}", self.server, self.stream);
        if let Some(subject) = &self.subject {
            key.push_str("?subject=");
            key.push_str(subject);
        }
        key
    }

    /// Where published messages go: `PREFIX.REST`, `PREFIX` being the URL's subject or, by
    /// default, the stream's name.
    pub fn subject_for(&self, rest: &str) -> String {
        format!("{}.{rest}", self.subject.as_deref().unwrap_or(&self.stream))
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An error that trying again will not cure (credentials refused, a subject the stream does not
/// take): whoever retries while the server is away gives up on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

/// A publish refused because the subject's last message is not the one expected: another
/// publisher wrote to the subject meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("{0}: another publisher wrote to it meanwhile")]
pub struct Conflict(pub String);

/// The last message of a subject: its stream sequence and headers.
pub struct LastMessage {
    pub sequence: u64,
    pub headers: HeaderMap,
}

/// A connection to the server of a stream URL.
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    /// A permission the server refused this client (it says so apart from any reply).
    refused: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    jetstream: jetstream::Context,
    url: StreamUrl,
}

impl Connection {
    /// Connects, failing when the server does not answer within [`CONNECT_TIMEOUT`].
    pub fn open(url: &StreamUrl) -> anyhow::Result<Connection> {
        // One thread of its own: the client answers the server's pings between calls.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nats")
            .enable_all()
            .build()?;
        let refused = std::sync::Arc::new(std::sync::Mutex::new(None));
        let heard = std::sync::Arc::clone(&refused);
        let mut options = async_nats::ConnectOptions::new()
            .name("logstats")
            .event_callback(move |event| {
                let heard = std::sync::Arc::clone(&heard);
                async move {
                    if let async_nats::Event::ServerError(async_nats::ServerError::Other(error)) =
                        event
                        && error.to_ascii_lowercase().contains("permissions violation")
                    {
                        *heard.lock().expect("refusal lock") = Some(error);
                    }
                }
            })
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(TIMEOUT));
        if let Some((user, password)) = &url.credentials {
            options = options.user_and_password(user.clone(), password.clone());
        }
        let client = runtime
            .block_on(options.connect(url.server.as_str()))
            .map_err(|e| {
                // Named by the stream: several may be on one server.
                let refused = matches!(
                    e.kind(),
                    async_nats::ConnectErrorKind::AuthorizationViolation
                        | async_nats::ConnectErrorKind::Authentication
                );
                let message = format!("{}: cannot reach NATS at {}: {e}", url.key(), url.server);
                match refused {
                    true => anyhow::Error::new(Permanent(message)),
                    false => anyhow::anyhow!(message),
                }
            })?;
        let jetstream = {
            let _context = runtime.enter();
            jetstream::new(client.clone())
        };
        Ok(Connection {
            runtime,
            client,
            refused,
            jetstream,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &StreamUrl {
        &self.url
    }

    /// Fails at once while the connection is lost (the client reconnects meanwhile), instead of
    /// letting a request wait for its timeout.
    fn connected(&self) -> anyhow::Result<()> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(anyhow::anyhow!(
                "{}: the connection to NATS at {} is lost (reconnecting)",
                self.url.key(),
                self.url.server
            )),
        }
    }

    /// The stream, with its information as the server has it now (one request).
    fn stream(&self) -> anyhow::Result<stream::Stream> {
        self.runtime
            .block_on(self.jetstream.get_stream(&self.url.stream))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.url.key()))
    }

    /// The stream, created (file storage, taking `PREFIX.>`) when it does not exist.
    pub fn create_stream(&self) -> anyhow::Result<()> {
        let prefix = self.url.subject.as_deref().unwrap_or(&self.url.stream);
        let config = stream::Config {
            name: self.url.stream.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        };
        // Two publishers may create it at once: the one that loses finds it made.
        let created = self
            .runtime
            .block_on(self.jetstream.get_or_create_stream(config));
        if let Err(error) = created
            && self.stream().is_err()
        {
            let message = format!("{}: creating the stream: {error}", self.url.key());
            // The server answered, and said no: trying again will not change its mind.
            return Err(match error.kind() {
                async_nats::jetstream::context::CreateStreamErrorKind::JetStream(_) => {
                    Permanent(message).into()
                }
                _ => anyhow::anyhow!(message),
            });
        }
        Ok(())
    }

    /// The subjects the stream takes.
    pub fn subjects(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.stream()?.cached_info().config.subjects.clone())
    }

    /// The stream's bounds, and the sequences between its first and last that it no longer holds
    /// (deleted, or dropped by a limit per subject), in any order. The list is asked for (a second
    /// request) only when there are such sequences.
    pub fn deleted(&self) -> anyhow::Result<(Bounds, Vec<u64>)> {
        let stream = self.stream()?;
        let bounds = Bounds::of(stream.cached_info());
        if bounds.inner_holes() == 0 {
            return Ok((bounds, Vec::new()));
        }
        let info = self
            .runtime
            .block_on(stream.info_builder().with_deleted(true).fetch())
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.url.key()))?
            .info;
        let bounds = Bounds::of(&info);
        let mut deleted = info.state.deleted.unwrap_or_default();
        // The list may be short: NATS 2.9 leaves out a memory-stored stream's last sequence, and a
        // file-stored one's sequences at the start of a block (those, reading finds as gaps).
        let listed = deleted
            .iter()
            .filter(|&&s| s >= bounds.first && s <= bounds.last)
            .count() as u64;
        if listed < bounds.inner_holes()
            && !deleted.contains(&bounds.last)
            && !self.holds(&stream, bounds.last)?
        {
            deleted.push(bounds.last);
        }
        Ok((bounds, deleted))
    }

    /// Whether `stream` holds a message at `sequence`.
    fn holds(&self, stream: &stream::Stream, sequence: u64) -> anyhow::Result<bool> {
        match self.runtime.block_on(stream.get_raw_message(sequence)) {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(false),
            Err(error) => Err(anyhow::anyhow!("{}: {error}", self.url.key())),
        }
    }

    /// The sequence of the first message at or after `sequence` of the URL's subject (any, without
    /// one); `None` when there is none.
    pub fn first_from(&self, sequence: u64) -> anyhow::Result<Option<u64>> {
        let stream = self
            .runtime
            .block_on(self.jetstream.get_stream_no_info(&self.url.stream))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.url.key()))?;
        let subject = self.url.subject.as_deref().unwrap_or(">");
        match self
            .runtime
            .block_on(stream.get_first_raw_message_by_subject(subject, sequence))
        {
            Ok(message) => Ok(Some(message.sequence)),
            Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(anyhow::anyhow!("{}: {error}", self.url.key())),
        }
    }

    /// Publishes `payload` to `subject` and waits for the stream to store it; `id` makes a
    /// repeated publish of the same message a no-op (the server's deduplication window), and
    /// `after` (the sequence of the subject's last message, 0 for none) makes it fail with
    /// [`Conflict`] when another publisher wrote to the subject meanwhile. Returns the message's
    /// sequence and whether the stream had it already (a duplicate `id`), or an error the caller
    /// may retry with the same `id` ([`Permanent`] when the server refused it).
    pub fn publish(
        &self,
        subject: &str,
        id: Option<&str>,
        after: Option<u64>,
        headers: &[(&str, String)],
        payload: Vec<u8>,
    ) -> anyhow::Result<(u64, bool)> {
        let mut map = HeaderMap::new();
        if let Some(id) = id {
            map.insert("Nats-Msg-Id", id);
        }
        if let Some(sequence) = after {
            map.insert("Nats-Expected-Last-Subject-Sequence", sequence.to_string());
        }
        for (name, value) in headers {
            map.insert(*name, value.as_str());
        }
        let published = self.runtime.block_on(async {
            let ack = self
                .jetstream
                .publish_with_headers(subject.to_string(), map, payload.into())
                .await?;
            ack.await
        });
        use async_nats::jetstream::context::PublishErrorKind;
        match published {
            Ok(ack) => Ok((ack.sequence, ack.duplicate)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(Conflict(subject.to_string()).into())
            }
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => Err(Permanent(format!(
                "{}: no stream takes the subject {subject}",
                self.url.key()
            ))
            .into()),
            // The server answered with an error (a message too large for the stream...).
            Err(e)
                if matches!(
                    e.kind(),
                    PublishErrorKind::Other | PublishErrorKind::MaxPayloadExceeded
                ) =>
            {
                Err(Permanent(format!("{}: publishing: {e}", self.url.key())).into())
            }
            // A publish the server's permissions refuse gets no ack, only an event.
            Err(_) if let Some(error) = self.refused.lock().expect("refusal lock").clone() => {
                Err(Permanent(format!("{}: publishing: {error}", self.url.key())).into())
            }
            Err(e) => Err(anyhow::anyhow!("{}: publishing: {e}", self.url.key())),
        }
    }

    /// The last message of `subject`, when it has one.
    pub fn last_message(&self, subject: &str) -> anyhow::Result<Option<LastMessage>> {
        // Asked before every new file and after every failed publish: no info request first.
        let stream = self
            .runtime
            .block_on(self.jetstream.get_stream_no_info(&self.url.stream))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.url.key()))?;
        match self
            .runtime
            .block_on(stream.get_last_raw_message_by_subject(subject))
        {
            Ok(message) => Ok(Some(LastMessage {
                sequence: message.sequence,
                headers: message.headers,
            })),
            Err(error)
                if error.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
            {
                Ok(None)
            }
            Err(error) => Err(anyhow::anyhow!("{}: {error}", self.url.key())),
        }
    }
}

/// Publishes what is written to it as messages of whole lines (about [`MESSAGE_BYTES`] each) to
/// one subject, each stored before the next is sent.
pub struct LinePublisher {
    connection: Connection,
    subject: String,
    pending: Vec<u8>,
    /// Messages stored so far.
    pub messages: u64,
}

/// Bytes of lines per message.
pub const MESSAGE_BYTES: usize = 256 * 1024;

impl LinePublisher {
    /// Publishes to `PREFIX.rest` of `url`'s stream (created when missing).
    pub fn open(url: &StreamUrl, rest: &str) -> anyhow::Result<LinePublisher> {
        let connection = Connection::open(url)?;
        connection.create_stream()?;
        Ok(LinePublisher {
            subject: url.subject_for(rest),
            connection,
            pending: Vec::with_capacity(2 * MESSAGE_BYTES),
            messages: 0,
        })
    }

    fn publish(&mut self, end: usize) -> std::io::Result<()> {
        let payload = self.pending[..end].to_vec();
        self.connection
            .publish(&self.subject, None, None, &[], payload)
            .map(drop)
            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        self.pending.drain(..end);
        self.messages += 1;
        Ok(())
    }

    /// Publishes what is left (a last line without a newline included).
    pub fn finish(mut self) -> std::io::Result<u64> {
        if !self.pending.is_empty() {
            self.publish(self.pending.len())?;
        }
        Ok(self.messages)
    }
}

impl std::io::Write for LinePublisher {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MESSAGE_BYTES {
            // Whole lines only; a line longer than a message goes alone.
            let end = match memchr::memrchr(b'\n', &self.pending[..MESSAGE_BYTES]) {
                Some(newline) => newline + 1,
                None => match memchr::memchr(b'\n', &self.pending) {
                    Some(newline) => newline + 1,
                    None => break,
                },
            };
            self.publish(end)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The note for a stream found made anew (deleted and created again) after sequence `position`
/// of its former self was read.
pub fn made_anew(url: &StreamUrl, position: u64) -> String {
    format!(
        "{}: the stream was made anew since its sequence {position} was read (its sequences \
         start again): read from its start",
        url.key()
    )
}

/// The sequences a stream holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub first: u64,
    pub last: u64,
    /// When the stream was created (Unix nanoseconds): a stream deleted and made again under the
    /// same name starts its sequences anew.
    pub created: u64,
    /// Messages and bytes it holds (headers included).
    pub messages: u64,
    pub bytes: u64,
}

impl Bounds {
    fn of(info: &stream::Info) -> Bounds {
        Bounds {
            first: info.state.first_sequence,
            last: info.state.last_sequence,
            created: info.created.unix_timestamp_nanos() as u64,
            messages: info.state.messages,
            bytes: info.state.bytes,
        }
    }

    /// How many sequences between the first and the last the stream no longer holds.
    pub fn inner_holes(&self) -> u64 {
        // A stream that never held a message has sequence 0 for both its first and last.
        if self.last == 0 {
            return 0;
        }
        (self.last + 1)
            .saturating_sub(self.first)
            .saturating_sub(self.messages)
    }

    /// About how many bytes the messages after `position` hold (for a progress bar).
    pub fn bytes_after(&self, position: u64) -> u64 {
        let unread = self
            .last
            .saturating_sub(position.max(self.first.saturating_sub(1)));
        let per_message = self.bytes as f64 / self.messages.max(1) as f64;
        (unread.min(self.messages) as f64 * per_message) as u64
    }
}

/// One message: its stream sequence and its bytes.
pub type Message = (u64, Vec<u8>);

/// Reads a stream's messages in sequence order from a position (the last sequence read).
pub struct Reader {
    connection: Connection,
    consumer: Option<consumer::PullConsumer>,
    position: u64,
    /// The creation time of the stream the position is in (0: not known yet).
    instance: u64,
    /// What the reader found worth telling (a stream made anew).
    notes: Vec<String>,
}

impl Reader {
    /// Reads on from `position` in the stream created at `instance` (0 when not known): a stream
    /// found made anew since is read from its start.
    pub fn open(url: &StreamUrl, position: u64, instance: u64) -> anyhow::Result<Reader> {
        Ok(Reader {
            connection: Connection::open(url)?,
            consumer: None,
            position,
            instance,
            notes: Vec::new(),
        })
    }

    /// The creation time of the stream being read.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// What the reader noted since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The last sequence read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the position on to `position`, past sequences known to hold nothing to read.
    pub fn skip_to(&mut self, position: u64) {
        self.position = self.position.max(position);
    }

    /// The next messages up to sequence `end`, about `max_bytes` of them; empty when there are
    /// none now (it never waits for new ones).
    pub fn read(&mut self, end: u64, max_bytes: usize) -> anyhow::Result<Vec<Message>> {
        let mut messages = Vec::new();
        let mut bytes = 0;
        if self.position >= end {
            return Ok(messages);
        }
        let key = self.connection.url.key();
        self.connection.connected()?;
        let consumer = match self.consumer.take() {
            Some(consumer) => consumer,
            None => self.create_consumer()?,
        };
        let mut overshot = false;
        while bytes < max_bytes && !overshot {
            // A server that goes away mid-batch never ends it: the batch has a deadline.
            let fetch = async {
                let mut batch = consumer
                    .fetch()
                    .max_messages(FETCH_MESSAGES)
                    .messages()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut fetched = Vec::new();
                while let Some(message) = batch.next().await {
                    let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let sequence = message
                        .info()
                        .map_err(|e| anyhow::anyhow!("{e}"))?
                        .stream_sequence;
                    fetched.push((sequence, message.message.payload.to_vec()));
                }
                anyhow::Ok(fetched)
            };
            let fetched = self.connection.runtime.block_on(async {
                tokio::time::timeout(TIMEOUT, fetch)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {TIMEOUT:?}")))
            });
            // The consumer may be gone (a server restart): the next read makes a new one, from
            // the position of the messages returned.
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(_) if !messages.is_empty() => return Ok(messages),
                Err(error) => return Err(error.context(format!("reading {key}"))),
            };
            if fetched.is_empty() {
                // Caught up. Nothing may also come from a consumer the server lost (a restart),
                // so the next read starts a new one from the position.
                self.delete(&consumer);
                return Ok(messages);
            }
            for (sequence, payload) in fetched {
                if sequence > end {
                    overshot = true;
                    break;
                }
                bytes += payload.len();
                self.position = sequence;
                messages.push((sequence, payload));
            }
        }
        // A consumer that delivered past `end` is ahead of the position: the next read starts anew.
        if !overshot {
            self.consumer = Some(consumer);
        }
        Ok(messages)
    }

    /// Deletes a consumer no longer used (the server would after a while of inactivity).
    fn delete(&self, consumer: &consumer::PullConsumer) {
        let name = consumer.cached_info().name.clone();
        let deleted = self.connection.stream().and_then(|stream| {
            let runtime = &self.connection.runtime;
            Ok(runtime.block_on(stream.delete_consumer(&name))?)
        });
        if let Err(error) = deleted {
            tracing::debug!("deleting consumer {name}: {error:#}");
        }
    }

    fn create_consumer(&mut self) -> anyhow::Result<consumer::PullConsumer> {
        let url = &self.connection.url;
        let stream = self.connection.stream()?;
        let created = stream.cached_info().created.unix_timestamp_nanos() as u64;
        if self.instance != created {
            if self.instance != 0 && self.position > 0 {
                self.notes.push(made_anew(url, self.position));
                self.position = 0;
            }
            self.instance = created;
        }
        let config = consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: self.position + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            filter_subject: url.subject.clone().unwrap_or_default(),
            inactive_threshold: Duration::from_secs(300),
            memory_storage: true,
            ..Default::default()
        };
        self.connection
            .runtime
            .block_on(stream.create_consumer(config))
            .map_err(|e| anyhow::anyhow!("{}: reading the stream: {e}", url.key()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_server_a_stream_and_maybe_a_subject_and_never_show_the_password() {
        let url =
            StreamUrl::parse("nats://ann:s%40cret@example.com/LOGS?subject=LOGS.web1.>").unwrap();
        assert_eq!(url.server, "example.com:4222");
        assert_eq!(url.stream, "LOGS");
        assert_eq!(url.subject.as_deref(), Some("LOGS.web1.>"));
        assert_eq!(
            url.credentials,
            Some(("ann".to_string(), "s@cret".to_string()))
        );
        assert_eq!(
            url.key(),
            "nats://example.com:4222/LOGS?subject=LOGS.web1.>"
        );
        assert!(!format!("{url:?}").contains("cret"));
        let plain = StreamUrl::parse("nats://127.0.0.1:4333/L_1").unwrap();
        assert_eq!(plain.key(), "nats://127.0.0.1:4333/L_1");
        assert_eq!(plain.subject_for("web1.7"), "L_1.web1.7");
    }

    #[test]
    fn malformed_urls_are_refused_without_quoting_credentials() {
        for bad in [
            "nats://u:secret@host",
            "nats://u:secret@host/",
            "nats://u:secret@host/A.B",
            "nats://u:secret@host/A?limit=3",
            "nats://u:secret@/A",
        ] {
            let error = StreamUrl::parse(bad).unwrap_err().to_string();
            assert!(!error.contains("secret"), "{error}");
            assert!(error.contains("nats://"), "{error}");
        }
    }

    #[test]
    fn inner_holes_are_the_sequences_between_the_first_and_last_not_held() {
        let bounds = Bounds {
            first: 11,
            last: 20,
            created: 1,
            messages: 10,
            bytes: 1000,
        };
        assert_eq!(bounds.inner_holes(), 0);
        assert_eq!(
            Bounds {
                messages: 7,
                ..bounds
            }
            .inner_holes(),
            3
        );
        let emptied = Bounds {
            first: 21,
            messages: 0,
            ..bounds
        };
        assert_eq!(emptied.inner_holes(), 0);
        let never_written = Bounds {
            first: 0,
            last: 0,
            messages: 0,
            ..bounds
        };
        assert_eq!(
            never_written.inner_holes(),
            0,
            "an empty stream's sequences are 0"
        );
        assert_eq!(bounds.bytes_after(0), 1000);
        assert_eq!(bounds.bytes_after(15), 500);
        assert_eq!(bounds.bytes_after(20), 0);
    }
}
