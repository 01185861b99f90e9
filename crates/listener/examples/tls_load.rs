//! The load client of `bench/tls.sh`: new TLS connections per second. wrk
//! resumes sessions, so its `Connection: close` runs measure abbreviated
//! handshakes; this client makes a full handshake every time (no session
//! cache, no tickets), sends one request with `Connection: close`, reads the
//! answer to its end, and starts again, on CONNS connections at once.
//!
//! It checks the server's handshake signature as any client does, but not
//! the certificate's chain (the benchmark's certificates are self-signed),
//! so both servers are held to the same work.
//!
//! Usage: tls_load HOST:PORT SECONDS CONNS [tls12|tls13] [PATH]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Checks handshake signatures; accepts any certificate.
#[derive(Debug)]
struct SignaturesOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SignaturesOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: tls_load HOST:PORT SECONDS CONNS [tls12|tls13] [PATH]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[0].parse().expect("HOST:PORT");
    let seconds: u64 = args[1].parse().expect("SECONDS");
    let conns: usize = args[2].parse().expect("CONNS");
    let version = match args.get(3).map(String::as_str) {
        Some("tls12") => &rustls::version::TLS12,
        _ => &rustls::version::TLS13,
    };
    let path = args.get(4).cloned().unwrap_or_else(|| "/".into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignaturesOnly(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // What the handshakes negotiated, for the report: servers differ in the
    // key exchange groups they offer (rustls prefers X25519MLKEM768).
    let negotiated = Arc::new(std::sync::OnceLock::<String>::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let end = Instant::now() + Duration::from_secs(seconds);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (connector, request, done, errors, negotiated) = (
                connector.clone(),
                request.clone(),
                done.clone(),
                errors.clone(),
                negotiated.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let name = ServerName::try_from("localhost").expect("name");
                let mut answer = Vec::with_capacity(4096);
                while Instant::now() < end {
                    let result = async {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let mut tls = connector.connect(name.clone(), tcp).await?;
                        negotiated.get_or_init(|| {
                            let session = tls.get_ref().1;
                            let suite = session.negotiated_cipher_suite();
                            let group = session.negotiated_key_exchange_group();
                            format!(
                                "{} {}",
                                suite.map_or("-".into(), |s| format!("{:?}", s.suite())),
                                group.map_or("-".into(), |g| format!("{:?}", g.name()))
                            )
                        });
                        tls.write_all(request.as_bytes()).await?;
                        answer.clear();
                        // A server may close without close_notify once
                        // the answer is whole (Connection: close).
                        match tls.read_to_end(&mut answer).await {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                            Err(e) => return Err(e),
                        }
                        Ok::<bool, std::io::Error>(answer.starts_with(b"HTTP/1.1 200"))
                    }
                    .await;
                    match result {
                        Ok(true) => done.fetch_add(1, Ordering::Relaxed),
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let done = done.load(Ordering::Relaxed);
    println!(
        "{:.1} handshakes/s ({done} in {seconds} s, {} errors; {})",
        done as f64 / seconds as f64,
        errors.load(Ordering::Relaxed),
        negotiated.get().map_or("no handshake", String::as_str)
    );
}
