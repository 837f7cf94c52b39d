"""The PostgreSQL store's tables, triggers and the SQL it runs (kept apart from the store's logic).

Tables (in the connection's default schema, shared by every namespace)::

    flagstaff_flags       (namespace, name) -> raw bytea, version
    flagstaff_namespaces  namespace -> revision of its newest change; the row is the
                          "initialized" marker (written with the first change)
    flagstaff_changes     one row per change: revision, prev (the namespace's revision
                          before it), name, version (NULL: deleted), at, author, before,
                          after, txid (the writing transaction: the changes of one
                          put_many share it)
    flagstaff_revision    sequence: revisions, global to the database
    flagstaff_schema      the schema version

Triggers on ``flagstaff_flags`` do the bookkeeping, so a row written by hand (``psql``) is
versioned, kept in history and pushed to watches like a write through flagstaff:

* ``BEFORE`` each statement: ``pg_advisory_xact_lock(WRITE_LOCK)``. Every writer takes it
  before touching a row and keeps it to commit, so writers commit in revision order (a
  sequence alone hands numbers out in call order, not commit order: a watch reading "after
  revision r" could pass a number whose transaction commits later, and miss it for good),
  and, taken before any row lock, it rules out deadlocks between writers.
* ``BEFORE UPDATE`` of a row: a version that did not go up is raised by one.
* ``AFTER`` each row: a change row, the namespace's revision, ``NOTIFY flagstaff`` with
  ``"<revision> <namespace>"`` (far below the 8000-byte payload limit: namespaces are capped
  at 200 characters). The author comes from ``set_config('flagstaff.author', …, true)`` in
  the writing statement; a hand edit has none.
"""

from __future__ import annotations

__all__ = [
    "CHANNEL",
    "HISTORY_LIMIT",
    "NAMESPACE_MAX",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SETUP_LOCK",
    "WRITE_LOCK",
]

SCHEMA_VERSION = 1
CHANNEL = "flagstaff"
NAMESPACE_MAX = 200
#: Advisory lock keys: every write holds WRITE_LOCK to commit; schema set-up holds SETUP_LOCK.
WRITE_LOCK = 0x666C6167  # "flag"
SETUP_LOCK = 0x666C6168
#: Change rows kept per namespace (the newest); trimmed every 64th revision.
HISTORY_LIMIT = 1000

SCHEMA = f"""
CREATE SEQUENCE IF NOT EXISTS flagstaff_revision;

CREATE TABLE IF NOT EXISTS flagstaff_flags (
    namespace text   NOT NULL,
    name      text   NOT NULL,
    raw       bytea  NOT NULL,
    version   bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE IF NOT EXISTS flagstaff_namespaces (
    namespace text   PRIMARY KEY,
    revision  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS flagstaff_changes (
    namespace text   NOT NULL,
    revision  bigint NOT NULL,
    prev      bigint NOT NULL,
    name      text   NOT NULL,
    version   bigint,
    at        double precision NOT NULL,
    author    text,
    before    bytea,
    after     bytea,
    txid      xid8   NOT NULL,
    PRIMARY KEY (namespace, revision)
);
CREATE INDEX IF NOT EXISTS flagstaff_changes_by_name ON flagstaff_changes (namespace, name, revision);
CREATE INDEX IF NOT EXISTS flagstaff_changes_by_txid ON flagstaff_changes (namespace, txid);

CREATE TABLE IF NOT EXISTS flagstaff_schema (version integer NOT NULL);

CREATE OR REPLACE FUNCTION flagstaff_serialize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({WRITE_LOCK});
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION flagstaff_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.namespace = OLD.namespace AND NEW.name = OLD.name AND NEW.version <= OLD.version THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION flagstaff_record(ns text, flag text, ver bigint, old bytea, new bytea)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rev bigint := nextval('flagstaff_revision');
    before_rev bigint;
BEGIN
    SELECT revision INTO before_rev FROM flagstaff_namespaces WHERE namespace = ns;
    INSERT INTO flagstaff_namespaces (namespace, revision) VALUES (ns, rev)
        ON CONFLICT (namespace) DO UPDATE SET revision = EXCLUDED.revision;
    INSERT INTO flagstaff_changes (namespace, revision, prev, name, version, at, author, before, after, txid)
        VALUES (ns, rev, coalesce(before_rev, 0), flag, ver, extract(epoch FROM clock_timestamp()),
                nullif(current_setting('flagstaff.author', true), ''), old, new, pg_current_xact_id());
    IF rev % 64 = 0 THEN
        DELETE FROM flagstaff_changes WHERE namespace = ns AND revision < (
            SELECT revision FROM flagstaff_changes WHERE namespace = ns
            ORDER BY revision DESC OFFSET {HISTORY_LIMIT - 1} LIMIT 1);
    END IF;
    PERFORM pg_notify('{CHANNEL}', rev || ' ' || ns);
END $$;

CREATE OR REPLACE FUNCTION flagstaff_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM flagstaff_record(NEW.namespace, NEW.name, NEW.version, NULL, NEW.raw);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM flagstaff_record(OLD.namespace, OLD.name, NULL, OLD.raw, NULL);
    ELSIF NEW.namespace = OLD.namespace AND NEW.name = OLD.name THEN
        PERFORM flagstaff_record(NEW.namespace, NEW.name, NEW.version, OLD.raw, NEW.raw);
    ELSE  -- renamed: the old name is deleted, the new one written
        PERFORM flagstaff_record(OLD.namespace, OLD.name, NULL, OLD.raw, NULL);
        PERFORM flagstaff_record(NEW.namespace, NEW.name, NEW.version, NULL, NEW.raw);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS flagstaff_serialize ON flagstaff_flags;
CREATE TRIGGER flagstaff_serialize BEFORE INSERT OR UPDATE OR DELETE ON flagstaff_flags
    FOR EACH STATEMENT EXECUTE FUNCTION flagstaff_serialize();
DROP TRIGGER IF EXISTS flagstaff_bump ON flagstaff_flags;
CREATE TRIGGER flagstaff_bump BEFORE UPDATE ON flagstaff_flags
    FOR EACH ROW EXECUTE FUNCTION flagstaff_bump();
DROP TRIGGER IF EXISTS flagstaff_changed ON flagstaff_flags;
CREATE TRIGGER flagstaff_changed AFTER INSERT OR UPDATE OR DELETE ON flagstaff_flags
    FOR EACH ROW EXECUTE FUNCTION flagstaff_changed();

DELETE FROM flagstaff_schema;
INSERT INTO flagstaff_schema (version) VALUES ({SCHEMA_VERSION});
"""
