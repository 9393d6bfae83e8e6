package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// RabbitMQ succeeds when the RabbitMQ server at amqpURL
// ("amqp://user:password@host:port/vhost") opens an AMQP 0-9-1 connection
// to the vhost for that user and a channel on it, and, when managementURL
// ("http://host:port") is not empty, its management API answers
// GET /api/overview for the same user with 200: the AMQP listener opens
// last at boot, and a server whose management plugin is still starting
// cannot make vhosts yet. One check costs a connection and an HTTP
// request. A refused login is permanent (see Permanent): the server is up
// and waiting longer will not change the password.
func RabbitMQ(amqpURL, managementURL string) Probe {
	name := "rabbitmq AMQP"
	u, perr := url.Parse(amqpURL)
	if perr == nil && u.Host != "" {
		name = "rabbitmq AMQP at " + u.Host
	}
	if managementURL != "" {
		name += " and management API"
	}
	return Func(name, func(ctx context.Context) error {
		if perr != nil || u.Host == "" || (u.Scheme != "amqp" && u.Scheme != "amqps") {
			return Permanent(fmt.Errorf("not an amqp:// URL: %q", redactURL(amqpURL)))
		}
		timeout := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		cfg := amqp.Config{
			Properties: amqp.Table{"connection_name": "cleanroom healthcheck"},
			Dial: func(network, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				// The handshake's deadline; amqp091 clears it once open.
				_ = c.SetDeadline(time.Now().Add(timeout))
				return c, nil
			},
		}
		conn, err := amqp.DialConfig(amqpURL, cfg)
		if err != nil {
			if e, ok := err.(*amqp.Error); ok && e.Code == amqp.AccessRefused {
				return Permanent(fmt.Errorf("open amqp connection: %w", err))
			}
			return fmt.Errorf("open amqp connection: %w", err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return fmt.Errorf("open amqp channel: %w", err)
		}
		_ = ch.Close()
		if managementURL == "" {
			return nil
		}
		return rabbitManagement(ctx, strings.TrimSuffix(managementURL, "/")+"/api/overview", u.User)
	})
}

func rabbitManagement(ctx context.Context, endpoint string, user *url.Userinfo) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return Permanent(err)
	}
	if user != nil {
		pass, _ := user.Password()
		req.SetBasicAuth(user.Username(), pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("management API: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management API: GET /api/overview: %s", resp.Status)
	}
	return nil
}
