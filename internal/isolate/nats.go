package isolate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS isolation is by prefix: a test owns the subjects under its prefix
// ("t_orders_1a2b3c4d.>") and the JetStream streams, key-value buckets,
// object stores and consumers whose names start with "<prefix>_" or whose
// subjects all lie under the prefix. While it runs, its process's admin
// connection answers requests on HeldSubject(prefix): a hold that the
// server forgets the moment the process dies (its TCP connection closes),
// so a suite-wide reset can tell the streams of running tests from
// leftovers without any lease bookkeeping.

// heldSubjectPrefix starts the subjects on which holds answer.
const heldSubjectPrefix = "_CLEANROOM.held."

// HeldSubject is the subject on which the holder of prefix answers.
func HeldSubject(prefix string) string { return heldSubjectPrefix + prefix }

// prefixRE matches a prefix NATSPrefixName makes: ObjectName's form.
var prefixRE = regexp.MustCompile(`^t_[a-z0-9_]*_[0-9a-f]{8}$`)

// NATSPrefixName makes a prefix for test: a valid subject token and a valid
// start of stream, bucket and consumer names ([a-z0-9_] only).
func NATSPrefixName(test string) string { return ObjectName("t_", test) }

// OwnsName says whether a stream (or consumer) name belongs to prefix:
// "<prefix>_…", or a key-value bucket's or object store's stream of such a
// name ("KV_<prefix>_…", "OBJ_<prefix>_…").
func OwnsName(prefix, name string) bool {
	name = trimBucketKind(name)
	return strings.HasPrefix(name, prefix+"_")
}

// OwnsSubjects says whether every subject lies under prefix (and there
// is at least one).
func OwnsSubjects(prefix string, subjects []string) bool {
	if len(subjects) == 0 {
		return false
	}
	for _, s := range subjects {
		if !strings.HasPrefix(s, prefix+".") {
			return false
		}
	}
	return true
}

func trimBucketKind(name string) string {
	for _, k := range []string{"KV_", "OBJ_"} {
		if rest, ok := strings.CutPrefix(name, k); ok {
			return rest
		}
	}
	return name
}

// Owners lists the prefixes that may own a stream with this name and
// these subjects: every start of the name that has a prefix's form and is
// followed by "_", and the first token of each subject that has it. A name
// like "t_a_1a2b3c4d_b_5e6f7a8b_x" gives two candidates; the stream is
// held when either is.
func Owners(name string, subjects []string) []string {
	var out []string
	name = trimBucketKind(name)
	for i := 0; i < len(name); i++ {
		if name[i] == '_' && prefixRE.MatchString(name[:i]) {
			out = append(out, name[:i])
		}
	}
	for _, s := range subjects {
		tok, _, _ := strings.Cut(s, ".")
		if prefixRE.MatchString(tok) && !slices.Contains(out, tok) {
			out = append(out, tok)
		}
	}
	return out
}

// natsAdmins holds one admin connection per server URL for the life of
// the process: it answers the holds of this process's tests and does their
// clean-up. A closed one (its server went away for good) is replaced.
var natsAdmins struct {
	mu    sync.Mutex
	conns map[string]*nats.Conn
}

// NATSAdmin returns the process's admin connection to the server at url.
func NATSAdmin(url string) (*nats.Conn, error) {
	natsAdmins.mu.Lock()
	defer natsAdmins.mu.Unlock()
	if nc := natsAdmins.conns[url]; nc != nil && !nc.IsClosed() {
		return nc, nil
	}
	nc, err := nats.Connect(url, nats.Name("cleanroom isolation"), nats.MaxReconnects(10), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("isolation: connect to nats at %s: %w", Redact(url), err)
	}
	if natsAdmins.conns == nil {
		natsAdmins.conns = map[string]*nats.Conn{}
	}
	natsAdmins.conns[url] = nc
	return nc, nil
}

// Hold makes admin answer on HeldSubject(prefix) until the returned
// function is called; it returns once the server has the subscription.
func Hold(ctx context.Context, admin *nats.Conn, prefix string) (release func(), err error) {
	sub, err := admin.Subscribe(HeldSubject(prefix), func(m *nats.Msg) { _ = m.Respond([]byte(prefix)) })
	if err != nil {
		return nil, fmt.Errorf("isolation: hold nats prefix %s: %w", prefix, err)
	}
	if err := admin.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("isolation: hold nats prefix %s: %w", prefix, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Held asks whether a running test holds prefix: someone answers on its
// subject. No responder means no; a responder too slow to answer within
// ctx counts as a holder, so that nothing of a live test is deleted.
func Held(ctx context.Context, nc *nats.Conn, prefix string) (bool, error) {
	_, err := nc.RequestWithContext(ctx, HeldSubject(prefix), nil)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return true, nil
	default:
		return false, fmt.Errorf("isolation: ask who holds nats prefix %s: %w", prefix, err)
	}
}

// DeletePrefixed deletes what prefix owns in JetStream: its streams (and
// with them their consumers, key-value buckets and object stores), and
// the consumers it made on other streams (named "<prefix>_…", or
// filtering only subjects under the prefix). It returns what it deleted:
// stream names, and "stream/consumer" for consumers.
func DeletePrefixed(ctx context.Context, nc *nats.Conn, prefix string) ([]string, error) {
	return deleteStreams(ctx, nc, func(ctx context.Context, si *jetstream.StreamInfo) (stream bool, consumers func(*jetstream.ConsumerInfo) bool, err error) {
		if OwnsName(prefix, si.Config.Name) || OwnsSubjects(prefix, si.Config.Subjects) {
			return true, nil, nil
		}
		return false, func(ci *jetstream.ConsumerInfo) bool {
			filters := ci.Config.FilterSubjects
			if ci.Config.FilterSubject != "" {
				filters = append(filters, ci.Config.FilterSubject)
			}
			return OwnsName(prefix, ci.Name) || OwnsSubjects(prefix, filters)
		}, nil
	})
}

// PrefixedStreams lists the streams prefix owns.
func PrefixedStreams(ctx context.Context, nc *nats.Conn, prefix string) ([]string, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var out []string
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		if OwnsName(prefix, si.Config.Name) || OwnsSubjects(prefix, si.Config.Subjects) {
			out = append(out, si.Config.Name)
		}
	}
	if err := l.Err(); noJetStream(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("isolation: list nats streams: %w", err)
	}
	return out, nil
}

// DeleteUnheld deletes every JetStream stream (key-value buckets and
// object stores included) that no running test holds (see Held), and
// returns their names: a suite-wide reset that leaves the tests running
// meanwhile alone.
func DeleteUnheld(ctx context.Context, nc *nats.Conn) ([]string, error) {
	return deleteStreams(ctx, nc, func(ctx context.Context, si *jetstream.StreamInfo) (bool, func(*jetstream.ConsumerInfo) bool, error) {
		for _, p := range Owners(si.Config.Name, si.Config.Subjects) {
			held, err := Held(ctx, nc, p)
			if err != nil || held {
				return false, nil, err
			}
		}
		return true, nil, nil
	})
}

// deleteStreams lists the streams and, for each, asks pick whether to
// delete it, or else which of its consumers to delete.
func deleteStreams(ctx context.Context, nc *nats.Conn, pick func(context.Context, *jetstream.StreamInfo) (bool, func(*jetstream.ConsumerInfo) bool, error)) ([]string, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var infos []*jetstream.StreamInfo
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		infos = append(infos, si)
	}
	if err := l.Err(); noJetStream(err) {
		return nil, nil // a server without JetStream has no streams
	} else if err != nil {
		return nil, fmt.Errorf("isolation: list nats streams: %w", err)
	}
	var deleted []string
	var errs []error
	for _, si := range infos {
		name := si.Config.Name
		whole, consumers, err := pick(ctx, si)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if whole {
			if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				errs = append(errs, fmt.Errorf("delete nats stream %s: %w", name, err))
				continue
			}
			deleted = append(deleted, name)
			continue
		}
		if consumers == nil || si.State.Consumers == 0 {
			continue
		}
		d, err := deleteConsumers(ctx, js, name, consumers)
		deleted = append(deleted, d...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return deleted, fmt.Errorf("isolation: %w", err)
	}
	return deleted, nil
}

func deleteConsumers(ctx context.Context, js jetstream.JetStream, stream string, pick func(*jetstream.ConsumerInfo) bool) ([]string, error) {
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // deleted meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("list consumers of nats stream %s: %w", stream, err)
	}
	var names []string
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if pick(ci) {
			names = append(names, ci.Name)
		}
	}
	if err := l.Err(); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("list consumers of nats stream %s: %w", stream, err)
	}
	var deleted []string
	var errs []error
	for _, n := range names {
		if err := s.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("delete consumer %s of nats stream %s: %w", n, stream, err))
			continue
		}
		deleted = append(deleted, stream+"/"+n)
	}
	return deleted, errors.Join(errs...)
}

// noJetStream says whether err means that the server (or the account)
// runs without JetStream: nothing answers its API, or it says so.
func noJetStream(err error) bool {
	return errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
		errors.Is(err, nats.ErrNoResponders)
}
