//! The lab's database (`lab up --app orders`): PostgreSQL in a namespace of
//! its own, `PREFIX-db`, on the lab LAN at [`DB_ADDRESS`], its cluster
//! initdb'd in the lab's state directory and run as the `postgres` user.
//!
//! It never collides with a system cluster (Debian's `main`): another
//! network namespace, and its Unix socket in the state directory, not
//! /var/run/postgresql. Only the `orders` role, from the lab subnet, may
//! connect over TCP (trust: the LAN is the lab's own).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::proc::{self, Proc};
use super::state::{DbState, LabState};
use super::{ip, tail, LAN_PREFIX_LEN};

/// The database host's address on the lab LAN (outside the nodes' .1-.8,
/// the service addresses' .10-.17 and the client's .100).
pub const DB_ADDRESS: &str = "10.77.0.200";
pub const DB_PORT: u16 = 5432;
/// The database and the role the application uses.
pub const DB_NAME: &str = "orders";
pub const DB_USER: &str = "orders";
/// Where Debian (and most distributions) put PostgreSQL's server binaries.
const PG_ROOT: &str = "/usr/lib/postgresql";
const PG_OS_USER: &str = "postgres";
/// How long the server may take to accept connections.
const START_WAIT: Duration = Duration::from_secs(30);

impl DbState {
    /// The database of lab `prefix`; fails, saying what to install, when
    /// PostgreSQL or its `postgres` user is missing.
    pub fn new(prefix: &str, state_dir: &Path) -> Result<DbState> {
        postgres_ids()?;
        Ok(DbState {
            namespace: format!("{prefix}-db"),
            address: DB_ADDRESS.to_owned(),
            port: DB_PORT,
            bin_dir: find_bin_dir()?,
            dir: state_dir.join("db"),
            log: state_dir.join("db.log"),
            process: None,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory holding the server's Unix socket (its own, so a
    /// system cluster's /var/run/postgresql is never touched).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The libpq connection string the application uses (over the LAN).
    pub fn dsn(&self) -> String {
        format!(
            "host={} port={} dbname={DB_NAME} user={DB_USER}",
            self.address, self.port
        )
    }

    /// `psql`, as the superuser over the Unix socket, in database `orders`:
    /// a command to run inside the db namespace (the tests count rows so).
    pub fn psql_args(&self) -> Vec<String> {
        vec![
            self.bin_dir.join("psql").to_string_lossy().into_owned(),
            "-X".into(),
            "-q".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-h".into(),
            self.socket_dir().to_string_lossy().into_owned(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            PG_OS_USER.into(),
            "-d".into(),
            DB_NAME.into(),
        ]
    }
}

/// The newest PostgreSQL under /usr/lib/postgresql/<version>/bin.
fn find_bin_dir() -> Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir(PG_ROOT)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "--app orders needs PostgreSQL: no {PG_ROOT}/<version>/bin/postgres \
             (Debian: apt-get install postgresql python3-psycopg2)"
        ),
    }
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> Result<(u32, u32)> {
    let name = std::ffi::CString::new(PG_OS_USER).expect("no NUL");
    // SAFETY: getpwnam reads a NUL-terminated name; the record it returns is
    // only read here, before any other call that could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        bail!(
            "--app orders runs PostgreSQL as the `{PG_OS_USER}` user, which does not exist \
             (the postgresql package creates it)"
        );
    }
    // SAFETY: non-null, just returned by getpwnam.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Runs `program args…` as `postgres` inside the db namespace: `setpriv`
/// execs it, so a spawned server's pid is the postmaster's own.
fn as_postgres(db: &DbState, program: &Path) -> std::process::Command {
    let mut cmd = ip::netns_command(&db.namespace, "setpriv");
    cmd.args([
        "--reuid",
        PG_OS_USER,
        "--regid",
        PG_OS_USER,
        "--init-groups",
        "--",
    ])
    .arg(program)
    // initdb and postgres complain when they cannot read the working
    // directory (root's home).
    .current_dir(&db.dir);
    cmd
}

/// The settings appended to postgresql.conf: this address only, the socket
/// in our own directory, small buffers (a lab).
fn server_conf(db: &DbState) -> String {
    format!(
        "\n# hotpair lab\n\
         listen_addresses = '{addr}'\n\
         port = {port}\n\
         unix_socket_directories = '{sock}'\n\
         max_connections = 100\n\
         shared_buffers = 16MB\n\
         logging_collector = off\n\
         log_min_messages = warning\n",
        addr = db.address,
        port = db.port,
        sock = db.socket_dir().display(),
    )
}

/// pg_hba.conf: the superuser over the Unix socket (the lab and the tests'
/// counts), the application's role from the lab subnet; nothing else.
fn hba_conf(db: &DbState) -> String {
    let net = db.address.rsplit_once('.').map_or("10.77.0", |(n, _)| n);
    format!(
        "# hotpair lab: written by `hotpair lab up --app orders`\n\
         local all            {PG_OS_USER} trust\n\
         host  {DB_NAME}     {DB_USER}    {net}.0/{LAN_PREFIX_LEN} trust\n"
    )
}

/// Initialises the cluster, starts the server, creates the role and the
/// database. The process is recorded in `state` (and saved) as soon as it
/// exists, so `lab down` stops it whatever fails later.
pub fn start(state: &mut LabState, say: &dyn Fn(&str)) -> Result<()> {
    let db = state.db.clone().context("the lab has no database")?;
    let (uid, gid) = postgres_ids()?;
    fs::create_dir_all(&db.dir).with_context(|| format!("creating {}", db.dir.display()))?;
    std::os::unix::fs::chown(&db.dir, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to {PG_OS_USER}", db.dir.display()))?;
    fs::set_permissions(&db.dir, fs::Permissions::from_mode(0o700))?;
    // Every directory above must let `postgres` through. The lab's own state
    // directory is made so (made under a umask of 077 it would not be);
    // for those above it, which are not the lab's, a failure is said plainly
    // here rather than as initdb's "permission denied" further on.
    if let Some(state_dir) = db.dir.parent() {
        let mode = fs::metadata(state_dir)?.permissions().mode();
        fs::set_permissions(state_dir, fs::Permissions::from_mode(mode | 0o001))
            .with_context(|| format!("letting {PG_OS_USER} through {}", state_dir.display()))?;
    }
    let mut probe = as_postgres(&db, Path::new("test"));
    probe.arg("-w").arg(&db.dir);
    if ip::run(&mut probe).is_err() {
        bail!(
            "the `{PG_OS_USER}` user cannot write {} (a directory above it not \
             searchable by others? e.g. chmod o+x {})",
            db.dir.display(),
            db.dir
                .ancestors()
                .skip(1)
                .take_while(|a| a != &Path::new("/"))
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    say(&format!("initdb in {}", db.data_dir().display()));
    let mut initdb = as_postgres(&db, &db.bin_dir.join("initdb"));
    initdb
        .arg("-D")
        .arg(db.data_dir())
        .args(["-U", PG_OS_USER, "-E", "UTF8", "--auth=trust"]);
    ip::run(&mut initdb).context("initdb of the lab's database")?;
    let conf = db.data_dir().join("postgresql.conf");
    let mut text =
        fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
    text.push_str(&server_conf(&db));
    fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    let hba = db.data_dir().join("pg_hba.conf");
    fs::write(&hba, hba_conf(&db)).with_context(|| format!("writing {}", hba.display()))?;

    say(&format!(
        "starting PostgreSQL in {} on {}:{}",
        db.namespace, db.address, db.port
    ));
    let mut server = as_postgres(&db, &db.bin_dir.join("postgres"));
    server.arg("-D").arg(db.data_dir());
    let p = proc::spawn_detached(server, &db.log)?;
    if let Some(d) = state.db.as_mut() {
        d.process = Some(p);
    }
    state.save()?;
    wait_ready(&db, p)?;

    let mut create = ip::netns_command(&db.namespace, db.bin_dir.join("psql"));
    let mut args = db.psql_args();
    // Connect to the maintenance database: `orders` does not exist yet.
    let d = args.len() - 1;
    args[d] = "postgres".into();
    create.args(&args[1..]).args([
        "-c",
        &format!("CREATE ROLE {DB_USER} LOGIN"),
        "-c",
        &format!("CREATE DATABASE {DB_NAME} OWNER {DB_USER}"),
    ]);
    ip::run(&mut create).context("creating the orders role and database")?;
    Ok(())
}

/// Polls `pg_isready` on the server's socket until it accepts connections.
fn wait_ready(db: &DbState, p: Proc) -> Result<()> {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let ready = ip::netns_command(&db.namespace, db.bin_dir.join("pg_isready"))
            .arg("-q")
            .arg("-h")
            .arg(db.socket_dir())
            .args([
                "-p",
                &db.port.to_string(),
                "-U",
                PG_OS_USER,
                "-d",
                "postgres",
            ])
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Ok(());
        }
        if !p.alive() {
            bail!(
                "PostgreSQL exited at start; tail of {}:\n{}",
                db.log.display(),
                tail(&db.log, 20)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL did not accept connections within {} s; tail of {}:\n{}",
                START_WAIT.as_secs(),
                db.log.display(),
                tail(&db.log, 20)
            );
        }
        sleep(Duration::from_millis(100));
    }
}

/// Stops the server: SIGINT (fast shutdown: sessions cut, a clean
/// checkpoint), then SIGKILL after a few seconds. Its backends die with the
/// namespace sweep of `lab down` should any outlive it.
pub fn stop(db: &DbState) {
    let Some(p) = db.process else { return };
    if p.signal(libc::SIGINT) && !p.wait_gone(Duration::from_secs(5)) {
        p.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> DbState {
        DbState {
            namespace: "hp-db".into(),
            address: DB_ADDRESS.into(),
            port: DB_PORT,
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
            dir: "/run/hotpair/lab-hp/db".into(),
            log: "/run/hotpair/lab-hp/db.log".into(),
            process: None,
        }
    }

    #[test]
    fn only_the_lab_subnet_and_our_socket() {
        let db = db();
        let hba = hba_conf(&db);
        assert!(
            hba.contains("host  orders     orders    10.77.0.0/24 trust"),
            "{hba}"
        );
        assert!(!hba.contains("0.0.0.0"), "{hba}");
        let conf = server_conf(&db);
        assert!(conf.contains("listen_addresses = '10.77.0.200'"), "{conf}");
        assert!(
            conf.contains("unix_socket_directories = '/run/hotpair/lab-hp/db'"),
            "{conf}"
        );
        assert_eq!(
            db.dsn(),
            "host=10.77.0.200 port=5432 dbname=orders user=orders"
        );
    }

    #[test]
    fn the_database_namespace_is_part_of_the_lab() {
        let mut state = super::super::fixtures::test_state(super::super::Mode::Simplex, None);
        state.db = Some(db());
        assert_eq!(state.namespaces().last().map(String::as_str), Some("hp-db"));
        // `lab down` finds it by name even without a state file.
        assert!(super::super::is_lab_member("db"));
        // The superuser's psql over the lab's own socket, in the orders database.
        let psql = db().psql_args();
        assert_eq!(psql[0], "/usr/lib/postgresql/15/bin/psql");
        assert!(psql
            .windows(2)
            .any(|w| w == ["-h", "/run/hotpair/lab-hp/db"]));
        assert!(psql.ends_with(&["-d".to_owned(), "orders".to_owned()]));
    }
}
