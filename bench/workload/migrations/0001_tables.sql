-- Ten tables, as a typical service has: keys, defaults, foreign keys, indexes.
CREATE TABLE t01 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX t01_name ON t01 (name);

CREATE TABLE t02 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t01(id)
);
CREATE INDEX t02_name ON t02 (name);

CREATE TABLE t03 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t02(id)
);
CREATE INDEX t03_name ON t03 (name);

CREATE TABLE t04 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t03(id)
);
CREATE INDEX t04_name ON t04 (name);

CREATE TABLE t05 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t04(id)
);
CREATE INDEX t05_name ON t05 (name);

CREATE TABLE t06 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t05(id)
);
CREATE INDEX t06_name ON t06 (name);

CREATE TABLE t07 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t06(id)
);
CREATE INDEX t07_name ON t07 (name);

CREATE TABLE t08 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t07(id)
);
CREATE INDEX t08_name ON t08 (name);

CREATE TABLE t09 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t08(id)
);
CREATE INDEX t09_name ON t09 (name);

CREATE TABLE t10 (
	id bigserial PRIMARY KEY,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	parent_id bigint REFERENCES t09(id)
);
CREATE INDEX t10_name ON t10 (name);
