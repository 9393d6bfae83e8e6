-- Ten plain tables (a primary key and a text column each): the shape the
-- isolation targets in ENVIRONMENT.md were measured with.
CREATE TABLE p01 (id int PRIMARY KEY, v text);
CREATE TABLE p02 (id int PRIMARY KEY, v text);
CREATE TABLE p03 (id int PRIMARY KEY, v text);
CREATE TABLE p04 (id int PRIMARY KEY, v text);
CREATE TABLE p05 (id int PRIMARY KEY, v text);
CREATE TABLE p06 (id int PRIMARY KEY, v text);
CREATE TABLE p07 (id int PRIMARY KEY, v text);
CREATE TABLE p08 (id int PRIMARY KEY, v text);
CREATE TABLE p09 (id int PRIMARY KEY, v text);
CREATE TABLE p10 (id int PRIMARY KEY, v text);
