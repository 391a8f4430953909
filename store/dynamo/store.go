package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"github.com/whp-dev/whp/store"
)

// Store is the DynamoDB implementation of store.Store. Each item keeps
// its object as a JSON document ("doc") beside the key, index and TTL
// attributes, so nothing is lost to attribute mapping; counters are
// numbers updated with ADD. Writes are single-item and conditional where
// the interface asks (revs, create-if-absent); status batches use
// BatchWriteItem. Throttling is retried by the SDK's standard retryer.
type Store struct {
	db  *dynamodb.Client
	env string
	now func() time.Time
	// subs keeps SubscriptionsForSchema's answers for SubscriptionsTTL,
	// or until this store writes a subscription.
	subs store.SubscriptionsCache
}

var _ store.Store = (*Store)(nil)

// SubscriptionsTTL is how long SubscriptionsForSchema keeps an answer:
// the processor asks every batch, and a schema with a subscription per
// tenant is thousands of items each time. Other processes' writes — an
// approval in the console, a reconcile — reach the processor's routing
// within it (its schema-index is eventually consistent anyway); what the
// dispatcher delivers is checked against the subscription as it is then.
const SubscriptionsTTL = 5 * time.Second

// New returns a store over the tables of env (webhooks-{env}-{table}).
func New(db *dynamodb.Client, env string) *Store {
	s := &Store{db: db, env: env, now: time.Now}
	s.subs.TTL, s.subs.Now = SubscriptionsTTL, func() time.Time { return s.now() }
	return s
}

// Close implements store.Store; the client needs no closing.
func (s *Store) Close() error { return nil }

func (s *Store) table(name string) *string { return aws.String(store.TableName(s.env, name)) }

func str(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func num(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func key(pk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: str(pk)}
}
func key2(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: str(pk), AttrSK: str(sk)}
}

func item(pk string, doc any, extra map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	m := map[string]types.AttributeValue{AttrPK: str(pk), "doc": str(string(b))}
	for k, v := range extra {
		m[k] = v
	}
	return m, nil
}

func decodeDoc(m map[string]types.AttributeValue, into any) error {
	d, ok := m["doc"].(*types.AttributeValueMemberS)
	if !ok {
		return errors.New("dynamo: item without doc")
	}
	return json.Unmarshal([]byte(d.Value), into)
}

func isConditionFailed(err error) bool {
	var c *types.ConditionalCheckFailedException
	return errors.As(err, &c)
}

func (s *Store) get(ctx context.Context, table string, k map[string]types.AttributeValue, into any) (map[string]types.AttributeValue, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table(table), Key: k, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, err
	}
	if out.Item == nil {
		return nil, store.ErrNotFound
	}
	return out.Item, decodeDoc(out.Item, into)
}

// scanAll reads a whole table (small tables: schemas, subscriptions).
func (s *Store) scanAll(ctx context.Context, table string, fn func(map[string]types.AttributeValue) error) error {
	p := dynamodb.NewScanPaginator(s.db, &dynamodb.ScanInput{TableName: s.table(table), ConsistentRead: aws.Bool(true)})
	return eachItem(ctx, p, func(o *dynamodb.ScanOutput) []map[string]types.AttributeValue { return o.Items }, fn)
}

func (s *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput, fn func(map[string]types.AttributeValue) error) error {
	p := dynamodb.NewQueryPaginator(s.db, in)
	return eachItem(ctx, p, func(o *dynamodb.QueryOutput) []map[string]types.AttributeValue { return o.Items }, fn)
}

// pager is what the SDK's Scan and Query paginators have in common.
type pager[O any] interface {
	HasMorePages() bool
	NextPage(context.Context, ...func(*dynamodb.Options)) (O, error)
}

// eachItem calls fn on every item of every page, stopping at the first error.
func eachItem[O any](ctx context.Context, p pager[O], items func(O) []map[string]types.AttributeValue, fn func(map[string]types.AttributeValue) error) error {
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, it := range items(out) {
			if err := fn(it); err != nil {
				return err
			}
		}
	}
	return nil
}

// PutSchema implements store.Store.
func (s *Store) PutSchema(ctx context.Context, sc store.Schema) error {
	it, err := item(sc.ID, sc, map[string]types.AttributeValue{"status": str(sc.Status), "contains_sensitive": str(strconv.FormatBool(sc.ContainsSensitive))})
	if err != nil {
		return err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(store.TableEventSchema), Item: it})
	return err
}

// GetSchema implements store.Store.
func (s *Store) GetSchema(ctx context.Context, id string) (store.Schema, error) {
	var sc store.Schema
	_, err := s.get(ctx, store.TableEventSchema, key(id), &sc)
	return sc, err
}

// ListSchemas implements store.Store.
func (s *Store) ListSchemas(ctx context.Context) ([]store.Schema, error) {
	var out []store.Schema
	err := s.scanAll(ctx, store.TableEventSchema, func(it map[string]types.AttributeValue) error {
		var sc store.Schema
		out = append(out, sc)
		return decodeDoc(it, &out[len(out)-1])
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// SchemasByStatus implements store.Store.
func (s *Store) SchemasByStatus(ctx context.Context, status string) ([]store.Schema, error) {
	var out []store.Schema
	err := s.queryAll(ctx, &dynamodb.QueryInput{TableName: s.table(store.TableEventSchema), IndexName: aws.String("status-index"),
		KeyConditionExpression: aws.String("#s = :s"), ExpressionAttributeNames: map[string]string{"#s": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": str(status)}}, func(it map[string]types.AttributeValue) error {
		var sc store.Schema
		out = append(out, sc)
		return decodeDoc(it, &out[len(out)-1])
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// PutSubscription implements store.Store.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription) (store.Subscription, error) {
	defer s.subs.Invalidate()
	stored := sub
	stored.Rev++
	it, err := item(sub.ID, stored, map[string]types.AttributeValue{"schema_id": str(sub.SchemaID), "rev": num(stored.Rev)})
	if err != nil {
		return store.Subscription{}, err
	}
	in := &dynamodb.PutItemInput{TableName: s.table(store.TablePartnerEventSubscription), Item: it}
	if sub.Rev == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		in.ConditionExpression = aws.String("rev = :rev")
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":rev": num(sub.Rev)}
	}
	if _, err := s.db.PutItem(ctx, in); err != nil {
		if isConditionFailed(err) {
			return store.Subscription{}, store.ErrConflict
		}
		return store.Subscription{}, err
	}
	return stored, nil
}

// GetSubscription implements store.Store.
func (s *Store) GetSubscription(ctx context.Context, id string) (store.Subscription, error) {
	var sub store.Subscription
	_, err := s.get(ctx, store.TablePartnerEventSubscription, key(id), &sub)
	return sub, err
}

// ListSubscriptions implements store.Store.
func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	var out []store.Subscription
	err := s.scanAll(ctx, store.TablePartnerEventSubscription, func(it map[string]types.AttributeValue) error {
		out = append(out, store.Subscription{})
		return decodeDoc(it, &out[len(out)-1])
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// SubscriptionsForSchema implements store.Store; an answer is kept for
// SubscriptionsTTL (store.SubscriptionsCache).
func (s *Store) SubscriptionsForSchema(ctx context.Context, schemaID string) ([]store.Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.subs.Load(schemaID, func() (out []store.Subscription, err error) {
		err = s.queryAll(ctx, &dynamodb.QueryInput{TableName: s.table(store.TablePartnerEventSubscription), IndexName: aws.String("schema-index"),
			KeyConditionExpression:    aws.String("schema_id = :s"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":s": str(schemaID)}}, func(it map[string]types.AttributeValue) error {
			out = append(out, store.Subscription{})
			return decodeDoc(it, &out[len(out)-1])
		})
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		return out, err
	})
}

// PutSubscriptionKafka implements store.Store: the metadata document is
// replaced, the counters kept.
func (s *Store) PutSubscriptionKafka(ctx context.Context, k store.SubscriptionKafka) error {
	k.Delivered, k.Failed, k.Filtered = 0, 0, 0
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	_, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: s.table(store.TableEventSubscriptionKafka), Key: key(k.SubscriptionID),
		UpdateExpression: aws.String("SET doc = :d"), ExpressionAttributeValues: map[string]types.AttributeValue{":d": str(string(b))}})
	return err
}

// GetSubscriptionKafka implements store.Store.
func (s *Store) GetSubscriptionKafka(ctx context.Context, id string) (store.SubscriptionKafka, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table(store.TableEventSubscriptionKafka), Key: key(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return store.SubscriptionKafka{}, err
	}
	if out.Item == nil {
		return store.SubscriptionKafka{}, store.ErrNotFound
	}
	return subscriptionKafka(id, out.Item)
}

// ListSubscriptionKafka implements store.Store with one scan.
func (s *Store) ListSubscriptionKafka(ctx context.Context) ([]store.SubscriptionKafka, error) {
	var out []store.SubscriptionKafka
	err := s.scanAll(ctx, store.TableEventSubscriptionKafka, func(it map[string]types.AttributeValue) error {
		pk, _ := it[AttrPK].(*types.AttributeValueMemberS)
		if pk == nil {
			return fmt.Errorf("%s: an item without its key", store.TableEventSubscriptionKafka)
		}
		k, err := subscriptionKafka(pk.Value, it)
		out = append(out, k)
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].SubscriptionID < out[j].SubscriptionID })
	return out, err
}

// subscriptionKafka decodes an item of event_subscription_kafka: the
// metadata document (absent while only counters were added) and the
// counters beside it.
func subscriptionKafka(id string, it map[string]types.AttributeValue) (store.SubscriptionKafka, error) {
	k := store.SubscriptionKafka{SubscriptionID: id}
	if _, ok := it["doc"]; ok {
		if err := decodeDoc(it, &k); err != nil {
			return k, err
		}
	}
	k.Delivered, k.Failed, k.Filtered = counter(it, "delivered"), counter(it, "failed"), counter(it, "filtered")
	return k, nil
}

func counter(it map[string]types.AttributeValue, name string) int64 {
	if n, ok := it[name].(*types.AttributeValueMemberN); ok {
		v, _ := strconv.ParseInt(n.Value, 10, 64)
		return v
	}
	return 0
}

// AddCounts implements store.Store with an atomic ADD.
func (s *Store) AddCounts(ctx context.Context, id string, c store.Counts) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: s.table(store.TableEventSubscriptionKafka), Key: key(id),
		UpdateExpression:          aws.String("ADD delivered :d, failed :f, filtered :x"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":d": num(c.Delivered), ":f": num(c.Failed), ":x": num(c.Filtered)}})
	return err
}

func ttl(t time.Time) map[string]types.AttributeValue {
	if t.IsZero() {
		return nil
	}
	return map[string]types.AttributeValue{AttrTTL: num(t.Unix())}
}

// CreateEvents implements store.Store.
func (s *Store) CreateEvents(ctx context.Context, es []store.Event) error {
	its := make([]map[string]types.AttributeValue, len(es))
	for i, e := range es {
		it, err := item(e.ID, e, ttl(e.ExpiresAt))
		if err != nil {
			return err
		}
		it[AttrSK] = str(eventSK)
		its[i] = it
	}
	return s.createAll(ctx, store.TableEventDeliveryStatus, its)
}

// createsAtOnce is how many conditional puts createAll has in flight.
const createsAtOnce = 16

// createAll puts each item into table unless an item of its key is there
// already: a conditional PutItem each, since BatchWriteItem takes no
// condition (and TransactWriteItems fails whole when one condition does),
// createsAtOnce at a time. One after the other they bounded a processor
// to a put's round trip per event and per delivery: ≈ 1,100 a second on
// dynalite here, a few hundred on DynamoDB (BenchmarkCreateDeliveries).
func (s *Store) createAll(ctx context.Context, tableKind string, its []map[string]types.AttributeValue) error {
	table := s.table(tableKind)
	// A worker each for every createsAtOnce-th item, not a goroutine an
	// item: each new goroutine grew its stack again through the SDK's
	// middleware (morestack ≈ 10 % of a processor's CPU).
	workers := min(createsAtOnce, len(its))
	g, gctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			for i := w; i < len(its); i += workers {
				_, err := s.db.PutItem(gctx, &dynamodb.PutItemInput{TableName: table, Item: its[i], ConditionExpression: aws.String("attribute_not_exists(pk)")})
				if err != nil && !isConditionFailed(err) {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

const (
	eventSK    = "EVENT"
	deliverySK = "DELIVERY#"
)

// GetEvent implements store.Store.
func (s *Store) GetEvent(ctx context.Context, id string) (store.Event, error) {
	var e store.Event
	_, err := s.get(ctx, store.TableEventDeliveryStatus, key2(id, eventSK), &e)
	return e, err
}

// historyKey orders history newest first when queried backwards: the
// delivery's creation time, fixed width, then its event's ID (a UUIDv7,
// so the deliveries one batch created at one instant list by event, as
// the embedded store lists them). Updates do not change it: an update
// puts the GSI entries in place instead of deleting and putting them (two
// write units less in each), and a page of history stays where it was
// while its deliveries are retried. It is stored as updated_key, the
// GSIs' sort key, whose name predates it (renaming it would rebuild both
// GSIs); items written before hold their update time there, and sort by
// the time prefix beside the new. A GSI's sort key need not be unique:
// the query pages by the item's own key too.
func historyKey(d store.Delivery) string {
	return sortTime(d.CreatedAt) + "#" + d.EventID
}

// sortTime is a time in a sort key — historyKey's, the audit log's:
// fixed width, so that keys compare as their times do, and a key of time
// t sorts after sortTime(t) alone.
func sortTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }

// The status indexes, partner-status-index and schema-status-index, are
// sparse: an item has their keys, partner_status and schema_status (its
// partner's or schema's ID, "#", its status), only while its status is one
// store.StatusIndexed names, so a delivery delivered on its first attempt
// never enters them and costs them no write unit. Their sort key is the
// history's, updated_key. Items written before them lack the keys, and are
// not in a status's history until they are written again or expire, or —
// the dead letters — IndexDeliveries gives them the keys (whp dlq reindex;
// infra/modules/dynamodb/README.md).
const (
	attrPartnerStatus = "partner_status"
	attrSchemaStatus  = "schema_status"
)

// statusKey is a status index's partition key: a partner's or a schema's
// ID, "#", the status (CountDeliveries reads the status as its last part).
func statusKey(id, status string) string { return id + "#" + status }

// deliveryDoc is a delivery's doc without the fields the item holds as
// attributes of its own (pk, sk, partner_id, schema_id): its outer
// fields hide the embedded ones from encoding/json and are left empty.
// That keeps a delivered item with one attempt under a kilobyte, one
// write unit instead of two, in the table and in each GSI
// (TestWriteUnitsPerDelivery). Docs written before hold them, and
// decodeDelivery reads either.
type deliveryDoc struct {
	store.Delivery
	EventID   string `json:"event_id,omitempty"`
	ID        string `json:"id,omitempty"`
	PartnerID string `json:"partner_id,omitempty"`
	SchemaID  string `json:"schema_id,omitempty"`
}

func deliveryItem(d store.Delivery) (map[string]types.AttributeValue, error) {
	extra := map[string]types.AttributeValue{AttrSK: str(deliverySK + d.ID), "partner_id": str(d.PartnerID),
		"schema_id": str(d.SchemaID), "updated_key": str(historyKey(d))}
	if store.StatusIndexed(d.Status) {
		extra[attrPartnerStatus] = str(statusKey(d.PartnerID, d.Status))
		extra[attrSchemaStatus] = str(statusKey(d.SchemaID, d.Status))
	}
	for k, v := range ttl(d.ExpiresAt) {
		extra[k] = v
	}
	return item(d.EventID, deliveryDoc{Delivery: d}, extra)
}

// decodeDelivery decodes a delivery item, its doc's missing fields from
// the item's attributes.
func decodeDelivery(it map[string]types.AttributeValue, d *store.Delivery) error {
	if err := decodeDoc(it, d); err != nil {
		return err
	}
	fillDelivery(it, d)
	return nil
}

// fillDelivery sets the fields a decoded doc left empty from the item's
// attributes.
func fillDelivery(it map[string]types.AttributeValue, d *store.Delivery) {
	attr := func(name string) string {
		if v, ok := it[name].(*types.AttributeValueMemberS); ok {
			return v.Value
		}
		return ""
	}
	if d.EventID == "" {
		d.EventID = attr(AttrPK)
	}
	if d.ID == "" {
		d.ID = strings.TrimPrefix(attr(AttrSK), deliverySK)
	}
	if d.PartnerID == "" {
		d.PartnerID = attr("partner_id")
	}
	if d.SchemaID == "" {
		d.SchemaID = attr("schema_id")
	}
}

// CreateDeliveries implements store.Store: each only if absent.
func (s *Store) CreateDeliveries(ctx context.Context, ds []store.Delivery) error {
	its := make([]map[string]types.AttributeValue, len(ds))
	for i, d := range ds {
		it, err := deliveryItem(d)
		if err != nil {
			return err
		}
		its[i] = it
	}
	return s.createAll(ctx, store.TableEventDeliveryStatus, its)
}

// PutDeliveries implements store.Store in batches of 25, retrying what
// DynamoDB leaves unprocessed.
func (s *Store) PutDeliveries(ctx context.Context, ds []store.Delivery) error {
	// One batch may not hold the same key twice: the last write wins.
	last := map[string]int{}
	for i, d := range ds {
		last[d.EventID+"\x00"+d.ID] = i
	}
	var reqs []types.WriteRequest
	for i, d := range ds {
		if last[d.EventID+"\x00"+d.ID] != i {
			continue
		}
		it, err := deliveryItem(d)
		if err != nil {
			return err
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
	}
	return s.batchWrite(ctx, store.TableEventDeliveryStatus, reqs)
}

// untilProcessed makes a batch request with send, and again with backoff
// (25 ms, doubling) for what DynamoDB leaves unprocessed (send returns how
// much that is), at most eight times again.
func untilProcessed(ctx context.Context, what string, send func() (left int, err error)) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(25<<attempt) * time.Millisecond):
			}
		}
		left, err := send()
		if err != nil || left == 0 {
			return err
		}
		if attempt >= 8 {
			return fmt.Errorf("%s: %d left unprocessed", what, left)
		}
	}
}

// batchWritesAtOnce is how many BatchWriteItem requests batchWrite has in
// flight.
const batchWritesAtOnce = 8

// batchWrite writes reqs to table with BatchWriteItem, 25 at a time (its
// limit), batchWritesAtOnce requests at once, writing again what comes
// back unprocessed (with backoff). A dispatcher's batch of 500 statuses
// is 20 requests: one after the other they were 20 round trips.
func (s *Store) batchWrite(ctx context.Context, tableKind string, reqs []types.WriteRequest) error {
	table := store.TableName(s.env, tableKind)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchWritesAtOnce)
	for start := 0; start < len(reqs); start += 25 {
		pending := map[string][]types.WriteRequest{table: reqs[start:min(start+25, len(reqs))]}
		g.Go(func() error {
			return untilProcessed(gctx, "batch write "+table, func() (int, error) {
				out, err := s.db.BatchWriteItem(gctx, &dynamodb.BatchWriteItemInput{RequestItems: pending})
				if err != nil {
					return 0, err
				}
				pending = out.UnprocessedItems
				return len(pending[table]), nil
			})
		})
	}
	return g.Wait()
}

// GetDelivery implements store.Store.
func (s *Store) GetDelivery(ctx context.Context, eventID, id string) (store.Delivery, error) {
	var d store.Delivery
	it, err := s.get(ctx, store.TableEventDeliveryStatus, key2(eventID, deliverySK+id), &d)
	if err != nil {
		return store.Delivery{}, err
	}
	fillDelivery(it, &d)
	return d, nil
}

// getDeliveriesAtOnce is how many BatchGetItem requests GetDeliveries
// has in flight.
const getDeliveriesAtOnce = 8

// GetDeliveries implements store.Store: BatchGetItem, 100 keys a request
// (its limit), getDeliveriesAtOnce requests at a time, eventually
// consistent (what reads for a view need), unprocessed keys read again
// with backoff. One GetItem each was a round trip each: the DLQ's list
// of 10,000 entries was 10,000 of them, one after the other.
func (s *Store) GetDeliveries(ctx context.Context, keys []store.DeliveryKey) ([]store.Delivery, error) {
	table := store.TableName(s.env, store.TableEventDeliveryStatus)
	// Where each key's item goes; BatchGetItem refuses a request that
	// names a key twice, so each is asked for once.
	at := make(map[store.DeliveryKey][]int, len(keys))
	var unique []store.DeliveryKey
	for i, k := range keys {
		if len(at[k]) == 0 {
			unique = append(unique, k)
		}
		at[k] = append(at[k], i)
	}
	// Each request fills the places of its own keys, which no other
	// request names: no lock.
	out := make([]store.Delivery, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(getDeliveriesAtOnce)
	for start := 0; start < len(unique); start += 100 {
		chunk := unique[start:min(start+100, len(unique))]
		g.Go(func() error {
			ks := make([]map[string]types.AttributeValue, len(chunk))
			for i, k := range chunk {
				ks[i] = key2(k.EventID, deliverySK+k.ID)
			}
			pending := map[string]types.KeysAndAttributes{table: {Keys: ks}}
			return untilProcessed(gctx, "get deliveries", func() (int, error) {
				res, err := s.db.BatchGetItem(gctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
				if err != nil {
					return 0, err
				}
				for _, it := range res.Responses[table] {
					var d store.Delivery
					if err := decodeDelivery(it, &d); err != nil {
						return 0, err
					}
					for _, i := range at[store.DeliveryKey{EventID: d.EventID, ID: d.ID}] {
						out[i] = d
					}
				}
				pending = res.UnprocessedKeys
				return len(pending[table].Keys), nil
			})
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// GetDeliveryState implements store.Store: one BatchGetItem over the
// ledger and status tables, consistent reads, unprocessed keys read again.
func (s *Store) GetDeliveryState(ctx context.Context, ledgerKey, eventID, id string) (store.DeliveryState, error) {
	ledger, status := store.TableName(s.env, store.TableIdempotencyLedger), store.TableName(s.env, store.TableEventDeliveryStatus)
	pending := map[string]types.KeysAndAttributes{
		ledger: {Keys: []map[string]types.AttributeValue{key(ledgerKey)}, ConsistentRead: aws.Bool(true)},
		status: {Keys: []map[string]types.AttributeValue{key2(eventID, deliverySK+id)}, ConsistentRead: aws.Bool(true)},
	}
	var out store.DeliveryState
	err := untilProcessed(ctx, "get delivery state", func() (int, error) {
		res, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: pending})
		if err != nil {
			return 0, err
		}
		for _, it := range res.Responses[ledger] {
			var rec store.Idempotency
			if err := decodeDoc(it, &rec); err != nil {
				return 0, err
			}
			out.Delivered = rec.ExpiresAt.After(s.now())
		}
		for _, it := range res.Responses[status] {
			if err := decodeDelivery(it, &out.Status); err != nil {
				return 0, err
			}
			out.Found = true
		}
		pending = res.UnprocessedKeys
		return len(pending[ledger].Keys) + len(pending[status].Keys), nil
	})
	if err != nil {
		return store.DeliveryState{}, err
	}
	return out, nil
}

// Deliveries implements store.Store.
func (s *Store) Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error) {
	var out []store.Delivery
	err := s.queryAll(ctx, &dynamodb.QueryInput{TableName: s.table(store.TableEventDeliveryStatus), ConsistentRead: aws.Bool(true),
		KeyConditionExpression:    aws.String("pk = :p AND begins_with(sk, :d)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(eventID), ":d": str(deliverySK)}}, func(it map[string]types.AttributeValue) error {
		out = append(out, store.Delivery{})
		return decodeDelivery(it, &out[len(out)-1])
	})
	return out, err
}

// DeliveriesByPartner implements store.Store.
func (s *Store) DeliveriesByPartner(ctx context.Context, partnerID string, p store.Page) (store.DeliveryPage, error) {
	return s.history(ctx, "partner", partnerID, p)
}

// DeliveriesBySchema implements store.Store.
func (s *Store) DeliveriesBySchema(ctx context.Context, schemaID string, p store.Page) (store.DeliveryPage, error) {
	return s.history(ctx, "schema", schemaID, p)
}

// CountDeliveries implements store.Store: a scan of partner-status-index,
// which holds the deliveries in an indexed status alone, counting those in
// status by partner, every page of it. DynamoDB bills it as reading them
// all (≈ half a read unit for four kilobytes of deliveries) and sends back
// each one's partner_status alone, "PARTNER#STATUS": the status is its
// last part. A scan rather than a query per partner: it counts the
// deliveries of a partner the catalog no longer holds too.
func (s *Store) CountDeliveries(ctx context.Context, status string) (map[string]int, error) {
	if !store.StatusIndexed(status) {
		return nil, fmt.Errorf("count of %q deliveries: not an indexed status", status)
	}
	in := &dynamodb.ScanInput{TableName: s.table(store.TableEventDeliveryStatus), IndexName: aws.String("partner-status-index"),
		ProjectionExpression: aws.String("#a"), ExpressionAttributeNames: map[string]string{"#a": attrPartnerStatus}}
	counts := map[string]int{}
	for {
		out, err := s.db.Scan(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, it := range out.Items {
			v, ok := it[attrPartnerStatus].(*types.AttributeValueMemberS)
			if !ok {
				continue
			}
			if i := strings.LastIndexByte(v.Value, '#'); i >= 0 && v.Value[i+1:] == status {
				counts[v.Value[:i]]++
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return counts, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// IndexDeliveries gives the deliveries ds names — each as a read of its
// item returned it — the status index keys their status calls for, where
// their items lack them: items written before the status indexes existed
// (infra/modules/dynamodb/README.md, "Upgrading"). Each is one UpdateItem
// conditioned on the item still lacking the keys and still in the status
// ds holds, so a delivery written meanwhile — redriven, attempted, already
// indexed — is left as it is. It returns how many it indexed. Deliveries
// in a status not indexed are skipped.
func (s *Store) IndexDeliveries(ctx context.Context, ds []store.Delivery) (int, error) {
	table := s.table(store.TableEventDeliveryStatus)
	var indexed atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(getDeliveriesAtOnce)
	for _, d := range ds {
		if !store.StatusIndexed(d.Status) {
			continue
		}
		g.Go(func() error {
			// The doc holds the status as its JSON field; a string inside
			// the doc (an excerpt) holds quotes escaped, so cannot match.
			_, err := s.db.UpdateItem(gctx, &dynamodb.UpdateItemInput{TableName: table, Key: key2(d.EventID, deliverySK+d.ID),
				UpdateExpression:          aws.String("SET #p = :p, #s = :s"),
				ConditionExpression:       aws.String("attribute_exists(#k) AND attribute_not_exists(#p) AND contains(#d, :st)"),
				ExpressionAttributeNames:  map[string]string{"#k": AttrPK, "#d": "doc", "#p": attrPartnerStatus, "#s": attrSchemaStatus},
				ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(statusKey(d.PartnerID, d.Status)), ":s": str(statusKey(d.SchemaID, d.Status)), ":st": str(`"status":"` + d.Status + `"`)}})
			switch {
			case isConditionFailed(err):
				return nil
			case err != nil:
				return fmt.Errorf("index delivery %s: %w", d.ID, err)
			}
			indexed.Add(1)
			return nil
		})
	}
	err := g.Wait()
	return int(indexed.Load()), err
}

// history queries by (partner or schema) the GSI of that name, or, for a
// status store.StatusIndexed names, its status index; another status
// filters the page the query returns.
func (s *Store) history(ctx context.Context, by, value string, p store.Page) (store.DeliveryPage, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 1000)
	index, attr, filter := by+"-index", by+"_id", p.Status
	if store.StatusIndexed(p.Status) {
		index, attr, value, filter = by+"-status-index", by+"_status", statusKey(value, p.Status), ""
	}
	cond, values := "#a = :v", map[string]types.AttributeValue{":v": str(value)}
	if !p.Before.IsZero() {
		cond += " AND updated_key < :b"
		values[":b"] = str(sortTime(p.Before))
	}
	in := &dynamodb.QueryInput{TableName: s.table(store.TableEventDeliveryStatus), IndexName: aws.String(index),
		KeyConditionExpression: aws.String(cond), ExpressionAttributeNames: map[string]string{"#a": attr},
		ExpressionAttributeValues: values, ScanIndexForward: aws.Bool(false), Limit: aws.Int32(int32(limit))}
	if p.Cursor != "" {
		start, err := decodeCursor(p.Cursor, attr)
		if err != nil {
			return store.DeliveryPage{}, fmt.Errorf("history of %s: %w", value, store.ErrInvalidCursor)
		}
		in.ExclusiveStartKey = start
	}
	out, err := s.db.Query(ctx, in)
	if err != nil && p.Cursor != "" && isValidation(err) {
		// A cursor of the right form whose key is not this query's
		// ("outside query boundaries"): another query's, or altered.
		return store.DeliveryPage{}, fmt.Errorf("history of %s: %w (%v)", value, store.ErrInvalidCursor, err)
	}
	if err != nil {
		return store.DeliveryPage{}, err
	}
	var page store.DeliveryPage
	for _, it := range out.Items {
		var d store.Delivery
		if err := decodeDelivery(it, &d); err != nil {
			return page, err
		}
		if filter == "" || d.Status == filter {
			page.Deliveries = append(page.Deliveries, d)
		}
	}
	if len(out.LastEvaluatedKey) > 0 && len(out.Items) == limit {
		page.Next = encodeCursor(out.LastEvaluatedKey)
	}
	return page, nil
}

func encodeCursor(k map[string]types.AttributeValue) string {
	m := map[string]string{}
	for name, v := range k {
		if s, ok := v.(*types.AttributeValueMemberS); ok {
			m[name] = s.Value
		}
	}
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(c, attr string) (map[string]types.AttributeValue, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for _, k := range []string{AttrPK, AttrSK, attr, "updated_key"} {
		if _, ok := m[k]; !ok {
			return nil, errors.New("cursor lacks " + k)
		}
	}
	out := map[string]types.AttributeValue{}
	for k, v := range m {
		out[k] = str(v)
	}
	return out, nil
}

// CreateIdempotency implements store.Store.
func (s *Store) CreateIdempotency(ctx context.Context, rec store.Idempotency) (store.Idempotency, error) {
	it, err := item(rec.Key, rec, map[string]types.AttributeValue{AttrTTL: num(rec.ExpiresAt.Unix()), "expires_at_ns": num(rec.ExpiresAt.UnixNano())})
	if err != nil {
		return store.Idempotency{}, err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(store.TableIdempotencyLedger), Item: it,
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR expires_at_ns <= :now"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(s.now().UnixNano())}})
	if isConditionFailed(err) {
		existing, gerr := s.GetIdempotency(ctx, rec.Key)
		if gerr != nil {
			return store.Idempotency{}, store.ErrConflict
		}
		return existing, store.ErrConflict
	}
	return store.Idempotency{}, err
}

// GetIdempotency implements store.Store; expired items are absent (TTL
// deletion in DynamoDB lags by up to days).
func (s *Store) GetIdempotency(ctx context.Context, k string) (store.Idempotency, error) {
	var rec store.Idempotency
	if _, err := s.get(ctx, store.TableIdempotencyLedger, key(k), &rec); err != nil {
		return store.Idempotency{}, err
	}
	if !rec.ExpiresAt.After(s.now()) {
		return store.Idempotency{}, store.ErrNotFound
	}
	return rec, nil
}

// PutIdempotency implements store.Store.
func (s *Store) PutIdempotency(ctx context.Context, rec store.Idempotency) error {
	it, err := ledgerItem(rec)
	if err != nil {
		return err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(store.TableIdempotencyLedger), Item: it})
	return err
}

// PutLedger implements store.Store.
func (s *Store) PutLedger(ctx context.Context, recs []store.Idempotency) error {
	// One batch may not hold the same key twice: the last write wins.
	last := map[string]int{}
	for i, rec := range recs {
		last[rec.Key] = i
	}
	var reqs []types.WriteRequest
	for i, rec := range recs {
		if last[rec.Key] != i {
			continue
		}
		it, err := ledgerItem(rec)
		if err != nil {
			return err
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
	}
	return s.batchWrite(ctx, store.TableIdempotencyLedger, reqs)
}

func ledgerItem(rec store.Idempotency) (map[string]types.AttributeValue, error) {
	return item(rec.Key, rec, map[string]types.AttributeValue{AttrTTL: num(rec.ExpiresAt.Unix()), "expires_at_ns": num(rec.ExpiresAt.UnixNano()), "rev": num(rec.Rev)})
}

// PutIdempotencyIf implements store.Store.
func (s *Store) PutIdempotencyIf(ctx context.Context, rec store.Idempotency, with ...store.Idempotency) (store.Idempotency, error) {
	// One after the other: TransactWriteItems would make it one write, but
	// dynalite, the DynamoDB the tests run against, has no transactions.
	for _, w := range with {
		if err := s.PutIdempotency(ctx, w); err != nil {
			return store.Idempotency{}, err
		}
	}
	stored := rec
	stored.Rev++
	it, err := item(rec.Key, stored, map[string]types.AttributeValue{AttrTTL: num(rec.ExpiresAt.Unix()), "expires_at_ns": num(rec.ExpiresAt.UnixNano()), "rev": num(stored.Rev)})
	if err != nil {
		return store.Idempotency{}, err
	}
	in := &dynamodb.PutItemInput{TableName: s.table(store.TableIdempotencyLedger), Item: it,
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": num(s.now().UnixNano())}}
	if rec.Rev == 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(pk) OR expires_at_ns <= :now")
	} else {
		in.ConditionExpression = aws.String("rev = :rev AND expires_at_ns > :now")
		in.ExpressionAttributeValues[":rev"] = num(rec.Rev)
	}
	if _, err := s.db.PutItem(ctx, in); err != nil {
		if isConditionFailed(err) {
			return store.Idempotency{}, store.ErrConflict
		}
		return store.Idempotency{}, err
	}
	return stored, nil
}

// DeleteIdempotency implements store.Store.
func (s *Store) DeleteIdempotency(ctx context.Context, k string) error {
	_, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: s.table(store.TableIdempotencyLedger), Key: key(k)})
	return err
}

// auditPK is the partition of the approvals audit log in
// event_delivery_status: decisions are rare (people make them), so one
// partition holds them all and reads back newest first.
const auditPK = "AUDIT"

// AppendDecision implements store.Store.
func (s *Store) AppendDecision(ctx context.Context, d store.Decision) error {
	it, err := item(auditPK, d, map[string]types.AttributeValue{
		AttrSK: str(sortTime(d.At) + "#" + d.SubscriptionID + "#" + d.Status)})
	if err != nil {
		return err
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table(store.TableEventDeliveryStatus), Item: it})
	return err
}

// Decisions implements store.Store.
func (s *Store) Decisions(ctx context.Context, limit int) ([]store.Decision, error) {
	if limit <= 0 {
		limit = 100
	}
	out, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: s.table(store.TableEventDeliveryStatus),
		KeyConditionExpression:    aws.String("pk = :p"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": str(auditPK)},
		ScanIndexForward:          aws.Bool(false), Limit: aws.Int32(int32(limit))})
	if err != nil {
		return nil, err
	}
	ds := make([]store.Decision, len(out.Items))
	for i, it := range out.Items {
		if err := decodeDoc(it, &ds[i]); err != nil {
			return nil, err
		}
	}
	return ds, nil
}
