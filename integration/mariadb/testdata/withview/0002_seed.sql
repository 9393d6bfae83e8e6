INSERT INTO customers (email) VALUES ('seed@example.com');
INSERT INTO orders (customer_id, total) VALUES (1, 9.99);
