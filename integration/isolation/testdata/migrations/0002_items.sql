-- The table the isolation tests write conflicting rows into.
CREATE TABLE items (
	id int PRIMARY KEY,
	owner text NOT NULL
);
