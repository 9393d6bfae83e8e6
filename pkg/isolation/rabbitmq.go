package isolation

import (
	"fmt"

	"github.com/cleanroom-go/cleanroom/internal/isolate"
)

// RabbitMQVhost is one test's virtual host on a shared RabbitMQ server
// (NewRabbitMQVhost): its queues, exchanges and bindings meet no other
// test's, whatever they are named.
type RabbitMQVhost struct {
	// Name is unique to the test: "t_", the test's name in lower case,
	// 8 random hex digits ("t_testorders_paid_1a2b3c4d").
	Name string
	// URL is amqp://user:password@host:port/<Name>, what amqp091-go's
	// Dial takes.
	URL string
}

// NewRabbitMQVhost gives test t a vhost of its own on the RabbitMQ server
// at amqpURL (amqp://user:password@host:port/, the user an administrator)
// through its management HTTP API at managementURL (http://host:port),
// with every permission for that user. When t ends the vhost is deleted
// with all it holds, or kept for inspection when t failed (the log says
// where to look) until a suite-wide reset. The test opens its own
// connections to URL and closes them; the deletion closes any left open.
// Safe for parallel tests.
//
// While t runs, its vhost is held: the process's admin connection to the
// server holds an exclusive queue named after it in the default vhost, so
// a suite-wide reset (cleanroom's Environment.Reset) spares it; the hold
// goes with the process, even when it is killed.
func NewRabbitMQVhost(t TB, amqpURL, managementURL string) *RabbitMQVhost {
	t.Helper()
	ctx, cancel := setupContext()
	defer cancel()
	admin, err := isolate.RabbitMQAdminFor(amqpURL, managementURL)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	name := isolate.RabbitMQVhostName(t.Name())
	// Held before it exists: a reset meanwhile cannot take it.
	release, err := admin.Hold(name)
	if err != nil {
		t.Fatalf("%v", err)
		return nil
	}
	if err := admin.CreateVhost(ctx, name); err != nil {
		release()
		t.Fatalf("%v", err)
		return nil
	}
	u, err := isolate.VhostURL(amqpURL, name)
	if err != nil {
		release()
		_ = admin.DeleteVhost(ctx, name)
		t.Fatalf("%v", err)
		return nil
	}
	t.Cleanup(func() {
		defer release()
		if t.Failed() {
			t.Logf("isolation: %s failed; kept its rabbitmq vhost %s for inspection until the next reset: %s", t.Name(), name, rabbitLine(name, u, managementURL))
			return
		}
		ctx, cancel := setupContext()
		defer cancel()
		if err := admin.DeleteVhost(ctx, name); err != nil {
			t.Errorf("%v", err)
		}
	})
	return &RabbitMQVhost{Name: name, URL: u}
}

// rabbitLine says where to look at a kept vhost: the management UI's page
// of its queues, and a file of this user's with its amqp URL (the
// password is in there, not in the log).
func rabbitLine(vhost, url, managementURL string) string {
	page := managementURL + "/#/queues/" + vhost
	path, err := keepURL(vhost, url)
	if err != nil {
		return fmt.Sprintf("%s (log in with the suite's user; the amqp URL could not be written to a file: %v)", page, err)
	}
	return fmt.Sprintf("%s (user and password in the amqp URL in %s)", page, path)
}
