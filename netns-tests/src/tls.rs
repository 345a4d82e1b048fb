//! HTTPS clients shared by the TLS tests: `openssl s_client`, whose output
//! says whether a session was resumed ("Reused, TLSv1.3") or not ("New").

use std::path::Path;

use crate::{Lab, SERVICE};

/// `openssl s_client` from the client namespace to the service address's
/// port 443 (the certificate checked against `ca`), one
/// `GET /static/index.html` with `Connection: close`, `extra` appended to
/// its command line (e.g. `-sess_out FILE`, `-sess_in FILE`). Returns all
/// it printed, stdout and stderr.
pub fn s_client(lab: &Lab, ca: &Path, extra: &str) -> String {
    let script = format!(
        "printf 'GET /static/index.html HTTP/1.1\\r\\nHost: hotpair.test\\r\\nConnection: close\\r\\n\\r\\n' \
         | openssl s_client -connect {SERVICE}:443 -servername hotpair.test -CAfile {} -tls1_3 -ign_eof {extra} 2>&1",
        ca.display()
    );
    let out = lab.exec_client(&["sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
