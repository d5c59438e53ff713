//! The backup session against real PostgreSQL servers: 15 from Debian, 13 and 18 fetched by
//! scripts/fetch-postgres.sh. Also exercises the test harness in tests/common/pg.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::{Cluster, ClusterOptions, PgInstall, owned_temp_dir, run_as_owner};
use pgcairn::ErrorKind;
use pgcairn::pg::conn::{self, LibpqEnv};
use pgcairn::pg::control::read_system_identifier;
use pgcairn::pg::session::{BackupSession, Tablespace};
use pgcairn::pg::wal::{self, Lsn};

fn open_session(conninfo: &str) -> pgcairn::Result<BackupSession> {
    BackupSession::open(conn::connect(Some(conninfo))?)
}

fn lsn(text: &str) -> Lsn {
    text.parse().unwrap()
}

/// Waits until the backend with `pid` has gone, so whatever it logs on exit is in the log.
fn wait_for_backend_exit(cluster: &Cluster, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.sql_one_string(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
    )) != "0"
    {
        assert!(Instant::now() < deadline, "backend {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn backend_pid(session: &mut BackupSession) -> i32 {
    session
        .client()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// The message PostgreSQL logs when a session ends with its non-exclusive backup still on.
const ABORTED_BACKUP: &str = "aborting backup due to backend exiting";

/// Everything the session does, on one major.
fn backup_session_on(major: u32) {
    let Some(cluster) = Cluster::started_checksummed(major, &[]) else {
        return;
    };

    // What the server says about itself.
    let mut session = open_session(&cluster.conninfo()).unwrap();
    let info = session.info().clone();
    assert_eq!(info.major(), major);
    assert_eq!(
        info.system_identifier,
        read_system_identifier(cluster.pgdata()).unwrap()
    );
    assert_eq!(info.data_directory.as_deref(), Some(cluster.pgdata()));
    assert_eq!(info.wal_segment_size, 16 << 20);
    assert_eq!(info.block_size, 8192);
    assert_eq!(info.relation_segment_blocks, 131072);
    assert!(info.data_checksums);
    assert_eq!(info.wal_level, "replica");
    assert!(!info.in_recovery);
    assert_eq!(info.user, "postgres");
    assert!(info.tablespaces.is_empty());

    // A backup with no tablespace.
    cluster.execute("CREATE TABLE t AS SELECT generate_series(1, 10000) AS i");
    let before = session.current_lsn().unwrap();
    let start = session.start("pgcairn test", true).unwrap();
    assert!(start.start_lsn >= before, "{} < {before}", start.start_lsn);
    assert_eq!(start.timeline, 1);
    assert_eq!(session.wal_reservation_warning(), None);
    let slot = session.wal_reservation_slot().unwrap().to_string();
    assert!(slot.starts_with("pgcairn_"), "{slot}");
    // The slot is temporary and holds WAL from at or before the backup's start.
    let row = &cluster.sql(&format!(
        "SELECT temporary, restart_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ))[0];
    assert!(row.get::<_, bool>(0));
    let restart_lsn = lsn(row.get(1));
    assert!(
        restart_lsn <= start.start_lsn,
        "{restart_lsn} > {}",
        start.start_lsn
    );

    cluster.execute("INSERT INTO t SELECT generate_series(1, 10000)");
    assert!(session.current_lsn().unwrap() > start.start_lsn);
    let stop = session.stop().unwrap();
    let label_text = String::from_utf8(stop.backup_label.clone()).unwrap();
    eprintln!("PostgreSQL {major} backup_label:\n{label_text}");
    assert!(
        label_text.starts_with("START WAL LOCATION: "),
        "{label_text}"
    );
    assert_eq!(stop.label.start_lsn, start.start_lsn);
    assert_eq!(stop.label.start_timeline, 1);
    assert_eq!(stop.label.label, "pgcairn test");
    // 13 still wrote "master" here.
    let primary = if major == 13 { "master" } else { "primary" };
    assert_eq!(stop.label.backup_from.as_deref(), Some(primary));
    assert_eq!(stop.label.backup_method.as_deref(), Some("streamed"));
    assert!(stop.label.checkpoint_lsn >= stop.label.start_lsn);
    assert_eq!(
        stop.label.start_wal_file,
        wal::segment_name(
            1,
            wal::segment_of(start.start_lsn, info.wal_segment_size),
            info.wal_segment_size
        )
    );
    assert!(stop.stop_lsn > start.start_lsn);
    assert_eq!(stop.tablespace_map, None);
    // Stopping is done once; a second stop is a caller bug, not a server round trip.
    assert_eq!(session.stop().unwrap_err().kind(), ErrorKind::Internal);

    // The reservation outlives the stop until released, so the caller can capture WAL up to
    // the stop segment.
    let slots = format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'");
    assert_eq!(cluster.sql_one_string(&slots), "1");
    session.release_wal_reservation();
    assert_eq!(session.wal_reservation_slot(), None);
    assert_eq!(cluster.sql_one_string(&slots), "0");
    let pid = backend_pid(&mut session);
    drop(session);
    wait_for_backend_exit(&cluster, pid);

    // A tablespace: listed, and its map returned.
    let ts_dir = owned_temp_dir();
    let ts_path = ts_dir.path().join("ts1");
    std::fs::create_dir(&ts_path).unwrap();
    common::pg::give_to_cluster_owner(&ts_path);
    cluster.execute(&format!(
        "CREATE TABLESPACE ts1 LOCATION '{}'",
        ts_path.display()
    ));
    cluster.execute("CREATE TABLE u TABLESPACE ts1 AS SELECT generate_series(1, 1000) AS i");
    let oid: u32 = cluster
        .sql_one_string("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
        .parse()
        .unwrap();
    let mut session = open_session(&cluster.conninfo()).unwrap();
    assert_eq!(
        session.info().tablespaces,
        [Tablespace {
            oid,
            location: ts_path.clone()
        }]
    );
    let start = session.start("with tablespace", false).unwrap();
    let stop = session.stop().unwrap();
    assert_eq!(stop.label.start_lsn, start.start_lsn);
    let map = String::from_utf8(stop.tablespace_map.unwrap()).unwrap();
    assert_eq!(map, format!("{oid} {}\n", ts_path.display()));
    let pid = backend_pid(&mut session);
    drop(session);
    wait_for_backend_exit(&cluster, pid);

    // Dropped while the backup is on: Drop stops it, so the server has nothing to abort, and
    // the next backup starts and stops normally.
    let mut session = open_session(&cluster.conninfo()).unwrap();
    session.start("abandoned", true).unwrap();
    let slot = session.wal_reservation_slot().unwrap().to_string();
    let pid = backend_pid(&mut session);
    drop(session);
    wait_for_backend_exit(&cluster, pid);
    assert!(!cluster.log().contains(ABORTED_BACKUP), "{}", cluster.log());
    assert_eq!(
        cluster.sql_one_string(&format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
        )),
        "0"
    );
    let mut session = open_session(&cluster.conninfo()).unwrap();
    let start = session.start("after abandoned", true).unwrap();
    let stop = session.stop().unwrap();
    assert_eq!(stop.label.label, "after abandoned");
    assert!(stop.stop_lsn > start.start_lsn);
    drop(session);

    // A role without the privilege is refused with the GRANTs that fix it; after running them
    // (and with no REPLICATION attribute), the backup works without a WAL reservation and
    // without reading data_directory.
    cluster.execute("CREATE ROLE backup LOGIN");
    let as_backup = format!("{} user=backup", cluster.conninfo());
    let err = open_session(&as_backup).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Database, "{err}");
    let message = err.to_string();
    assert!(message.contains("GRANT EXECUTE ON FUNCTION"), "{message}");
    let grants = &message[message.find("GRANT").unwrap()..];
    cluster.execute(grants);
    let mut session = open_session(&as_backup).unwrap();
    assert_eq!(session.info().user, "backup");
    assert_eq!(session.info().data_directory, None);
    let start = session.start("unprivileged", true).unwrap();
    let warning = session.wal_reservation_warning().unwrap();
    assert!(warning.contains("REPLICATION"), "{warning}");
    assert_eq!(session.wal_reservation_slot(), None);
    let stop = session.stop().unwrap();
    assert_eq!(stop.label.start_lsn, start.start_lsn);
    drop(session);

    // With REPLICATION the role gets its reservation too.
    cluster.execute("ALTER ROLE backup REPLICATION");
    let mut session = open_session(&as_backup).unwrap();
    session.start("replication role", true).unwrap();
    assert_eq!(session.wal_reservation_warning(), None);
    assert!(session.wal_reservation_slot().is_some());
    session.stop().unwrap();
    let pid = backend_pid(&mut session);
    drop(session);
    wait_for_backend_exit(&cluster, pid);

    assert!(!cluster.log().contains(ABORTED_BACKUP), "{}", cluster.log());
}

#[test]
fn backup_session_pg15() {
    backup_session_on(15);
}

#[test]
fn backup_session_pg13() {
    backup_session_on(13);
}

#[test]
fn backup_session_pg18() {
    backup_session_on(18);
}

/// The log check above means something: a session that ends without stopping its backup does
/// make the server log the abort.
#[test]
fn server_logs_a_backup_left_running() {
    let Some(cluster) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    let mut client = cluster.client();
    client
        .query_one("SELECT pg_backup_start('left running', true)", &[])
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    drop(client);
    wait_for_backend_exit(&cluster, pid);
    assert!(cluster.log().contains(ABORTED_BACKUP), "{}", cluster.log());
}

#[test]
fn wal_level_minimal_is_refused() {
    let Some(cluster) =
        Cluster::started_checksummed(15, &["wal_level = minimal", "max_wal_senders = 0"])
    else {
        return;
    };
    let err = open_session(&cluster.conninfo()).err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Database);
    assert!(err.to_string().contains("wal_level"), "{err}");
}

#[test]
fn no_server_is_a_database_error_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let conninfo = format!("host={} port=5999 user=postgres", dir.path().display());
    let err = conn::connect(Some(&conninfo)).err().expect("no server");
    assert_eq!(err.kind(), ErrorKind::Database);
    let socket = dir.path().join(".s.PGSQL.5999");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to PostgreSQL at {} as user postgres: ",
            socket.display()
        )),
        "{err}"
    );
}

/// The harness's own promises: the cluster owner, socket and TCP access, helpers, pgbench,
/// stop and restart, and a copied data directory started with `from_existing`. (Its
/// `config_value` and `walk` are exercised by tests/pg_files.rs.)
#[test]
fn harness_runs_a_cluster() {
    let Some(install) = PgInstall::require(15) else {
        return;
    };
    let mut cluster = Cluster::init(&install, ClusterOptions::default());
    assert!(cluster.pgdata().join("PG_VERSION").is_file());
    cluster.start();
    assert!(cluster.is_running());
    assert_eq!(cluster.sql_one_string("SHOW data_checksums"), "off");
    assert_eq!(cluster.sql_one_string("SHOW wal_level"), "replica");
    assert_eq!(cluster.sql_one_string("SELECT current_user"), "postgres");
    let socket = cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()));
    assert!(socket.exists(), "{}", socket.display());

    // The conninfo that pgcairn gets, as a URL over TCP; the application name is pgcairn's.
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let mut client = conn::connect(Some(&url)).unwrap();
    let row = client
        .query_one("SELECT current_setting('application_name')", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pgcairn");

    // The environment reaches the server the way PGHOST and PGPORT would.
    let socket_dir = cluster.socket_dir().display().to_string();
    let port = cluster.port().to_string();
    let env = LibpqEnv {
        var: Box::new(move |name| match name {
            "PGHOST" => Some(socket_dir.clone()),
            "PGPORT" => Some(port.clone()),
            "PGUSER" => Some("postgres".into()),
            "PGAPPNAME" => Some("from-env".into()),
            _ => None,
        }),
        ..LibpqEnv::system()
    };
    let config = conn::resolve(None, &env).unwrap();
    let mut client = conn::connect_with(&config).unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_database()",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "from-env");
    assert_eq!(row.get::<_, String>(1), "postgres");
    drop(client);

    cluster.pgbench_init(1);
    assert_eq!(
        cluster.sql_one_string("SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );
    let out = cluster.pgbench(&["-t", "20", "-c", "2"]);
    assert!(
        out.contains("number of transactions actually processed: 40"),
        "{out}"
    );

    // Files made by run_as_owner belong to the same user as the cluster's.
    let scratch = owned_temp_dir();
    let marker = scratch.path().join("marker");
    run_as_owner(Command::new("touch").arg(&marker), "touch");
    assert_eq!(owner_of(&marker), owner_of(cluster.pgdata()));

    // Stop, copy the data directory as its owner would, start the copy.
    let pid = cluster.pid().unwrap();
    cluster.stop();
    assert!(!cluster.is_running());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert!(cluster.log().contains("database system is shut down"));
    let copy: PathBuf = scratch.path().join("copy");
    run_as_owner(
        Command::new("cp")
            .arg("-a")
            .arg(cluster.pgdata())
            .arg(&copy),
        "cp -a",
    );
    let mut restored = Cluster::from_existing(&install, &copy);
    restored.start();
    assert_eq!(
        restored.sql_one_string("SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );
    assert_eq!(
        restored.sql_one_string("SHOW data_directory"),
        copy.display().to_string()
    );
    restored.stop();

    // The original starts again (on a new port).
    cluster.start();
    assert_eq!(cluster.sql_one_string("SELECT 1"), "1");
}

fn owner_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().uid()
}

/// A backup taken from a standby: the session sees recovery, positions come from replay, and
/// the label says so.
#[test]
fn backup_from_a_standby() {
    let Some(primary) = Cluster::started_checksummed(15, &[]) else {
        return;
    };
    primary.execute("CREATE TABLE t AS SELECT generate_series(1, 1000) AS i");
    let mut standby = Cluster::standby_of(&primary, &[]);
    standby.start();

    let mut session = open_session(&standby.conninfo()).unwrap();
    assert!(session.info().in_recovery);
    assert_eq!(
        session.info().system_identifier,
        read_system_identifier(primary.pgdata()).unwrap()
    );
    let start = session.start("from standby", true).unwrap();
    assert_eq!(start.timeline, 1);
    primary.execute("INSERT INTO t SELECT generate_series(1, 1000); CHECKPOINT");
    let stop = session.stop().unwrap();
    assert_eq!(stop.label.backup_from.as_deref(), Some("standby"));
    assert_eq!(stop.label.start_lsn, start.start_lsn);
    assert!(stop.stop_lsn >= start.start_lsn);
    assert!(session.current_lsn().unwrap() >= start.start_lsn);
    // A standby can hold a physical slot too.
    assert_eq!(session.wal_reservation_warning(), None);
    assert!(session.wal_reservation_slot().is_some());
    drop(session);
    standby.stop();
    assert!(!standby.log().contains(ABORTED_BACKUP), "{}", standby.log());
}
