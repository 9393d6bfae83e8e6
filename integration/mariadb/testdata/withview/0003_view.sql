CREATE VIEW order_totals AS
	SELECT c.email, SUM(o.total) AS total FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.email;
