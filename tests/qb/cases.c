/*
 * tests/qb/cases.c -- the C equivalent of each workers-qb 1.14.0 test case
 * in tests/qb/cases.json (id -> builder calls).  Included by
 * tests/check_qb.c, which loads the JSON and compares.
 *
 * Variant pairs in workers-qb (object API fetchAll({...}) and fluent
 * select()...) map to the same C calls; both ids are listed and both run.
 * Kinds that need an engine (count, execute, logger, pg_execute) build the
 * statement(s) they would run; the comparison is on that SQL and its
 * values.  What only an engine can show (logger called once, duration,
 * result shapes, migration bookkeeping in a real transaction) is covered
 * by tests/check_qb_conn.c, the executor's test.
 */

typedef struct case_out {
    int rc;
    char *errmsg;          /* copy of the builder's message on error */
    qb_query *q;           /* SQL / params / fetch compared */
    char *text;            /* toDebugSQL: compared instead of q's SQL */
    qb_query *hist[8];     /* pg migration cases: statements in order */
    size_t nhist;
} case_out;

typedef void (*case_fn)(case_out *o);

#define T(x) qb_text(x)
#define I(x) qb_int(x)
#define B(x) qb_bool(x)
/* (n, vals) argument pair from a list of values */
#define V(...) QB_NVALS(__VA_ARGS__), QB_VALS(__VA_ARGS__)
/* (n, list) argument pair from string literals */
#define L(...) (sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *)), \
    ((const char *const[]){__VA_ARGS__})

static void keep_err(case_out *o, const char *msg)
{
    if (o->rc != QB_OK)
        o->errmsg = strdup(msg ? msg : "");
}

static void sel_out(case_out *o, qb_select *s, qb_fetch f)
{
    o->rc = qb_select_build(s, f, &o->q);
    keep_err(o, qb_select_errmsg(s));
    qb_select_free(s);
}

static void sel_count(case_out *o, qb_select *s)
{
    o->rc = qb_select_build_count(s, &o->q);
    keep_err(o, qb_select_errmsg(s));
    qb_select_free(s);
}

static void ins_out(case_out *o, qb_insert *ins)
{
    o->rc = qb_insert_build(ins, &o->q);
    keep_err(o, qb_insert_errmsg(ins));
    qb_insert_free(ins);
}

static void upd_out(case_out *o, qb_update *u)
{
    o->rc = qb_update_build(u, &o->q);
    keep_err(o, qb_update_errmsg(u));
    qb_update_free(u);
}

static void del_out(case_out *o, qb_delete *d)
{
    o->rc = qb_delete_build(d, &o->q);
    keep_err(o, qb_delete_errmsg(d));
    qb_delete_free(d);
}

/* ---- select basics (1-74) ---------------------------------------------- */

static void c_all(case_out *o) { sel_out(o, qb_select_new("testTable"), QB_FETCH_ALL); }
static void c_one(case_out *o) { sel_out(o, qb_select_new("testTable"), QB_FETCH_ONE); }

static void c_7(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = ?", T("test"));
    sel_out(o, s, QB_FETCH_ONE);
}

static void c_9(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = true");
    sel_out(o, s, QB_FETCH_ONE);
}

static void c_10(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE(s, "active = ?", B(0));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_12(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE(s, "count = ?", I(0));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_14(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE(s, "label = ?", T(""));
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *empty_where(void)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_where_list(s, QB_AND, 0, NULL, 0, NULL); /* conditions: [] */
    return s;
}

static void c_16(case_out *o) { sel_out(o, empty_where(), QB_FETCH_ONE); }
static void c_18(case_out *o) { sel_count(o, empty_where()); }

static void c_19(case_out *o)
{
    qb_select *s = empty_where();
    qb_select_offset(s, 3);
    sel_count(o, s);
}

static void c_20(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_offset(s, 4);
    sel_count(o, s);
}

static void c_21(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_offset(s, 4);
    qb_select_group_by(s, "field");
    sel_count(o, s);
}

static void c_22(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_where_list(s, QB_AND, L("field = true", "active = false"), 0,
                         NULL);
    sel_out(o, s, QB_FETCH_ONE);
}

static void c_23(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "name = ?1 or id = ?1", T("asd"));
    sel_out(o, s, QB_FETCH_ONE);
}

static void c_24(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_where_list(s, QB_AND, L("name = ?1", "alias = ?1"),
                         V(T("test_value")));
    sel_out(o, s, QB_FETCH_ONE);
}

static void c_25(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "status = ?1 AND (created_by = ?2 OR updated_by = ?2)",
             T("active"), T("admin"));
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *join_base(void)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = ?1", T("test"));
    return s;
}

static void c_26(case_out *o)
{
    qb_select *s = join_base();
    qb_select_join(s, NULL, "employees", NULL,
                   "testTable.employee_id = employees.id");
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *two_joins(void)
{
    qb_select *s = join_base();
    qb_select_join(s, NULL, "employees", NULL,
                   "testTable.employee_id = employees.id");
    qb_select_join(s, NULL, "offices", NULL,
                   "testTable.office_id = offices.id");
    return s;
}

static void c_28(case_out *o) { sel_out(o, two_joins(), QB_FETCH_ALL); }
static void c_30(case_out *o) { sel_count(o, two_joins()); }

static void c_32(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "id");
    qb_select_fields(s, "name");
    QB_WHERE(s, "field = ?1", T("test"));
    qb_select_join(s, "LEFT", "employees", NULL,
                   "testTable.employee_id = employees.id");
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *grouped_sub(void)
{
    qb_select *sub = qb_select_new("otherTable");
    qb_select_fields(sub, "test_table_id");
    qb_select_fields(sub, "GROUP_CONCAT(attribute) AS attributes");
    qb_select_group_by(sub, "test_table_id");
    return sub;
}

static qb_select *sub_join(void)
{
    qb_select *s = join_base(), *sub = grouped_sub();
    qb_select_join_sub(s, NULL, sub, "otherTableGrouped",
                       "testTable.id = otherTableGrouped.test_table_id");
    qb_select_free(sub);
    return s;
}

static void c_34(case_out *o) { sel_out(o, sub_join(), QB_FETCH_ALL); }
static void c_36(case_out *o) { sel_count(o, sub_join()); }

static void c_38(case_out *o)
{
    qb_select *s = join_base();
    qb_select *sub = qb_select_new("otherTable");
    qb_select *sub2 = qb_select_new("otherTableTwo");

    qb_select_fields(sub2, "other_table_id");
    qb_select_fields(sub2, "GROUP_CONCAT(other_attribute) AS other_attributes");
    qb_select_group_by(sub2, "other_table_id");
    qb_select_fields(sub, "test_table_id");
    qb_select_fields(sub, "GROUP_CONCAT(attribute) AS attributes");
    qb_select_fields(sub,
        "GROUP_CONCAT(other_attributes, \";\") AS other_attributes");
    qb_select_group_by(sub, "test_table_id");
    qb_select_join_sub(sub, NULL, sub2, "otherTableTwoGrouped",
                       "otherTable.id = otherTableTwoGrouped.other_table_id");
    qb_select_join_sub(s, NULL, sub, "otherTableGrouped",
                       "testTable.id = otherTableGrouped.test_table_id");
    qb_select_free(sub);
    qb_select_free(sub2);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_40(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = 'test'");
    sel_out(o, s, QB_FETCH_ONE);
}

static void c_41(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_where_list(s, QB_AND, L("field = ?", "test = ?"),
                         V(T("test"), I(123)));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_42(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = ?", T("test"));
    QB_WHERE(s, "test = ?", I(123));
    sel_out(o, s, QB_FETCH_ALL);
}

/* Object-API form: one where call with both conditions. */
static qb_select *w12_list(void)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_where_list(s, QB_AND, L("field = ?1", "test = ?2"),
                         V(T("test"), I(123)));
    return s;
}

/* Fluent form: two where calls, one value each. */
static qb_select *w12_fluent(void)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = ?1", T("test"));
    QB_WHERE(s, "test = ?2", I(123));
    return s;
}

static qb_select *w12(int fluent)
{
    return fluent ? w12_fluent() : w12_list();
}

static void grp(case_out *o, int fluent, int two)
{
    qb_select *s = w12(fluent);
    qb_select_group_by(s, "type");
    if (two)
        qb_select_group_by(s, "day");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_43(case_out *o) { grp(o, 0, 0); }
static void c_44(case_out *o) { grp(o, 1, 0); }
static void c_45(case_out *o) { grp(o, 0, 1); }
static void c_46(case_out *o) { grp(o, 1, 1); }

static void hav(case_out *o, int fluent, int two)
{
    qb_select *s = w12(fluent);
    qb_select_group_by(s, "type");
    if (two && !fluent)
        qb_select_having_list(s, L("COUNT(trackid) > 15",
                                   "COUNT(trackid) < 30"), 0, NULL);
    else {
        QB_HAVING(s, "COUNT(trackid) > 15");
        if (two)
            QB_HAVING(s, "COUNT(trackid) < 30");
    }
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_47(case_out *o) { hav(o, 0, 0); }
static void c_48(case_out *o) { hav(o, 1, 0); }
static void c_49(case_out *o) { hav(o, 0, 1); }
static void c_50(case_out *o) { hav(o, 1, 1); }

static void ord(case_out *o, int fluent, int variant)
{
    qb_select *s = w12(fluent);
    qb_select_group_by(s, "type");
    switch (variant) {
    case 0:
        qb_select_order_by(s, "id", QB_ORDER_NONE);
        break;
    case 1:
        qb_select_order_by(s, "id", QB_ORDER_NONE);
        qb_select_order_by(s, "timestamp", QB_ORDER_NONE);
        break;
    default:
        qb_select_order_by(s, "id", QB_ORDER_ASC);
        qb_select_order_by(s, "timestamp", QB_ORDER_DESC);
    }
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_51(case_out *o) { ord(o, 0, 0); }
static void c_52(case_out *o) { ord(o, 1, 0); }
static void c_53(case_out *o) { ord(o, 0, 1); }
static void c_54(case_out *o) { ord(o, 1, 1); }
static void c_55(case_out *o) { ord(o, 0, 2); }
static void c_56(case_out *o) { ord(o, 1, 2); }

static void limoff(case_out *o, int fluent)
{
    qb_select *s = w12(fluent);
    qb_select_group_by(s, "type");
    qb_select_limit(s, 10);
    qb_select_offset(s, 15);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_57(case_out *o) { limoff(o, 0); }
static void c_58(case_out *o) { limoff(o, 1); }

static void c_59(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_limit(s, 0);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_61(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_limit(s, 10);
    qb_select_offset(s, 0);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_63(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_where_list(s, QB_AND,
                         L("field = ?1 OR test = ?2", "test = ?3 OR field = ?4"),
                         V(T("test"), I(123), I(456), T("test")));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_64(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    QB_WHERE(s, "field = ?1 OR test = ?2", T("test"), I(123));
    QB_WHERE(s, "test = ?3 OR field = ?4", I(456), T("test"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_65(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE_IN(s, "field", I(1), I(2), I(3), I(4));
    sel_out(o, s, QB_FETCH_ALL);
}

static void in4(qb_select *s)
{
    qb_select_where_in_cols(s, QB_AND, L("field", "test"), 4,
                            QB_VALS(T("somebody"), I(1), T("once"), I(2),
                                    T("told"), I(3), T("me"), I(4)));
}

static void c_66(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    in4(s);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_67(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE(s, "commited = ?", I(1));
    in4(s);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_68(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    in4(s);
    QB_WHERE(s, "commited = ?", I(1));
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *cross(void)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "*");
    qb_select_join(s, "CROSS", "employees", NULL, "1=1");
    return s;
}

static void c_69(case_out *o) { sel_out(o, cross(), QB_FETCH_ALL); }

static void c_71(case_out *o)
{
    qb_select *s = cross();
    QB_WHERE(s, "field = ?", T("test"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_73(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "id");
    qb_select_fields(s, "name");
    qb_select_join(s, "CROSS", "employees", NULL, "1=1");
    sel_out(o, s, QB_FETCH_ALL);
}

/* ---- subqueries (75-84, 174-180) ---------------------------------------- */

static void where_sub(case_out *o, const char *table, const char *cond,
                      qb_select *sub)
{
    qb_select *s = qb_select_new(table);
    QB_WHERE(s, cond, qb_subquery(sub));
    qb_select_free(sub);
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *sub_allowed(void)
{
    qb_select *sub = qb_select_new("allowed_ids");
    qb_select_fields(sub, "id");
    return sub;
}

static qb_select *sub_projects(void)
{
    qb_select *sub = qb_select_new("projects");
    qb_select_fields(sub, "id");
    QB_WHERE(sub, "status = ?", T("active"));
    return sub;
}

static void c_75(case_out *o) { where_sub(o, "users", "id IN ?", sub_allowed()); }
static void c_76(case_out *o) { where_sub(o, "tasks", "project_id IN ?", sub_projects()); }

static void c_77(case_out *o)
{
    qb_select *s = qb_select_new("tasks"), *sub = sub_projects();
    QB_WHERE(s, "user_id = ?", I(10));
    QB_WHERE(s, "project_id IN ?", qb_subquery(sub));
    qb_select_free(sub);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_78(case_out *o)
{
    qb_select *s = qb_select_new("tasks"), *sub = sub_projects();
    QB_WHERE(s, "project_id IN ?", qb_subquery(sub));
    QB_WHERE(s, "user_id = ?", I(10));
    qb_select_free(sub);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_79(case_out *o)
{
    qb_select *sub = qb_select_new("permissions");
    qb_select_fields(sub, "id");
    QB_WHERE(sub, "user_id = ? AND action = ?", I(100), T("edit"));
    where_sub(o, "documents", "EXISTS ?", sub);
}

static qb_select *sub_settings(void)
{
    qb_select *sub = qb_select_new("settings");
    qb_select_fields(sub, "value");
    QB_WHERE(sub, "key = ?", T("default_role"));
    qb_select_limit(sub, 1);
    return sub;
}

static void c_80(case_out *o) { where_sub(o, "users", "role = ?", sub_settings()); }

static void c_81(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select *s1 = qb_select_new("group_members");
    qb_select *s2 = qb_select_new("banned_users");
    qb_select_fields(s1, "user_id");
    QB_WHERE(s1, "group_id = ?", I(1));
    qb_select_fields(s2, "user_id");
    QB_WHERE(s2, "reason = ?", T("spam"));
    QB_WHERE(s, "id IN ?", qb_subquery(s1));
    QB_WHERE(s, "id NOT IN ?", qb_subquery(s2));
    qb_select_free(s1);
    qb_select_free(s2);
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *sub_orders_having(void)
{
    qb_select *sub = qb_select_new("orders");
    qb_select_fields(sub, "customer_id");
    qb_select_group_by(sub, "customer_id");
    QB_HAVING(sub, "SUM(total) > ?", I(1000));
    return sub;
}

static void c_82(case_out *o)
{
    qb_select *s = qb_select_new("customers"), *sub = sub_orders_having();
    qb_select_fields(s, "id");
    qb_select_fields(s, "name");
    qb_select_fields(s, "COUNT(orders.id) as order_count");
    qb_select_join(s, NULL, "orders", NULL, "customers.id = orders.customer_id");
    qb_select_group_by(s, "customers.id");
    qb_select_group_by(s, "customers.name");
    QB_HAVING(s, "id IN ?", qb_subquery(sub));
    qb_select_free(sub);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_83(case_out *o)
{
    qb_select *s = qb_select_new("sales");
    qb_select_fields(s, "region");
    qb_select_fields(s, "SUM(amount) as total");
    qb_select_group_by(s, "region");
    QB_HAVING(s, "SUM(amount) > ?1 AND AVG(amount) > ?1", I(1000));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_84(case_out *o)
{
    qb_select *s = qb_select_new("orders");
    qb_select_fields(s, "customer_id");
    qb_select_fields(s, "COUNT(*) as order_count");
    qb_select_fields(s, "SUM(total) as total_spent");
    qb_select_group_by(s, "customer_id");
    qb_select_having_list(s, L("COUNT(*) >= ?1", "SUM(total) >= ?1"),
                          V(I(100)));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_174(case_out *o) { where_sub(o, "users", "id IN ?", sub_allowed()); }

static void c_175(case_out *o) { where_sub(o, "tasks", "project_id IN ?", sub_projects()); }

static void c_176(case_out *o)
{
    qb_select *sub = qb_select_new("permissions");
    QB_WHERE(sub, "user_id = ?", I(100));
    QB_WHERE(sub, "action = ?", T("edit"));
    where_sub(o, "documents", "EXISTS ?", sub);
}

static void c_177(case_out *o) { where_sub(o, "users", "role_id = ?", sub_settings()); }

static void c_178(case_out *o)
{
    qb_select *s = qb_select_new("customers"), *sub = sub_orders_having();
    qb_select_fields(s, "id");
    qb_select_fields(s, "name");
    QB_HAVING(s, "id IN ?", qb_subquery(sub));
    qb_select_free(sub);
    sel_out(o, s, QB_FETCH_ALL);
}

static void join_orders_sub(case_out *o, int with_where)
{
    qb_select *s = qb_select_new("customers"), *sub = qb_select_new("orders");
    qb_select_fields(sub, "customer_id");
    qb_select_fields(sub, "COUNT(id) as order_count");
    if (with_where)
        QB_WHERE(sub, "status = ?", T("completed"));
    qb_select_group_by(sub, "customer_id");
    qb_select_fields(s, "customers.name");
    qb_select_fields(s, "oc.order_count");
    qb_select_join_sub(s, NULL, sub, "oc", "customers.id = oc.customer_id");
    qb_select_free(sub);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_179(case_out *o) { join_orders_sub(o, 0); }
static void c_180(case_out *o) { join_orders_sub(o, 1); }

/* ---- when and convenience where (85-110) ------------------------------- */

static void cb_active(qb_select *s, void *arg) { (void)arg; QB_WHERE(s, "active = ?", I(1)); }
static void cb_stock_gt(qb_select *s, void *arg) { (void)arg; QB_WHERE(s, "stock > ?", I(0)); }
static void cb_stock_eq(qb_select *s, void *arg) { (void)arg; QB_WHERE(s, "stock = ?", I(0)); }
static void cb_name(qb_select *s, void *arg) { QB_WHERE(s, "name = ?", T(arg)); }
static void cb_role(qb_select *s, void *arg) { QB_WHERE(s, "role = ?", T(arg)); }

static void cb_archived(qb_select *s, void *arg)
{
    (void)arg;
    QB_WHERE(s, "status = ?", T("archived"));
    qb_select_order_by(s, "archived_at", QB_ORDER_NONE);
}

static void cb_active_status(qb_select *s, void *arg)
{
    (void)arg;
    QB_WHERE(s, "status = ?", T("active"));
    qb_select_order_by(s, "created_at", QB_ORDER_NONE);
}

static void when_case(case_out *o, int cond,
                      void (*then)(qb_select *, void *),
                      void (*otherwise)(qb_select *, void *))
{
    qb_select *s = qb_select_new("testTable");
    qb_select_when(s, cond, then, otherwise, NULL);
    sel_out(o, s, QB_FETCH_ALL);
}

/* JS truthiness of null/undefined/false/0/'' is a C 0. */
static void c_85(case_out *o) { when_case(o, 1, cb_active, NULL); }
static void c_falsy(case_out *o) { when_case(o, 0, cb_active, NULL); }
static void c_92(case_out *o) { when_case(o, 1, cb_stock_gt, cb_stock_eq); }
static void c_93(case_out *o) { when_case(o, 0, cb_stock_gt, cb_stock_eq); }
static void c_99(case_out *o) { when_case(o, 0, cb_archived, cb_active_status); }

static void c_91(case_out *o)
{
    const char *name_filter = "john", *role_filter = NULL;
    qb_select *s = qb_select_new("testTable");
    qb_select_when(s, name_filter != NULL, cb_name, NULL, (void *)name_filter);
    qb_select_when(s, role_filter != NULL, cb_role, NULL, (void *)role_filter);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_100(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_null(s, QB_AND, "deleted_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_101(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_null(s, QB_NOT, "email_verified_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_102(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE(s, "active = ?", I(1));
    qb_select_where_null(s, QB_AND, "deleted_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_103(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_between(s, QB_AND, "price", I(10), I(100));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_104(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_between(s, QB_NOT, "price", I(10), I(100));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_105(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_like(s, QB_AND, "name", T("%john%"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_106(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_like(s, QB_NOT, "email", T("%@spam.com"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_107(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_in(s, QB_NOT, "status", V(T("banned"), T("suspended")));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_108(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_in_cols(s, QB_NOT, L("field", "test"), 2,
                            QB_VALS(T("a"), I(1), T("b"), I(2)));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_109(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_where_in(s, QB_NOT, "status", 0, NULL);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_110(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    QB_WHERE(s, "active = ?", I(1));
    qb_select_where_null(s, QB_AND, "deleted_at");
    qb_select_where_between(s, QB_AND, "age", I(18), I(65));
    qb_select_where_like(s, QB_AND, "name", T("%test%"));
    sel_out(o, s, QB_FETCH_ALL);
}

/* ---- insert (111-124) --------------------------------------------------- */

static void c_111(case_out *o)
{
    qb_insert *ins = qb_insert_new("testTable");
    qb_insert_set(ins, "my_field", T("test"));
    ins_out(o, ins);
}

static void c_112(case_out *o)
{
    qb_insert *ins = qb_insert_new("testTable");
    qb_insert_set(ins, "my_field", T("test"));
    qb_insert_set(ins, "created_at", qb_raw("CURRENT_TIMESTAMP"));
    ins_out(o, ins);
}

static qb_insert *ins2(void)
{
    qb_insert *ins = qb_insert_new("testTable");
    qb_insert_set(ins, "my_field", T("test"));
    qb_insert_set(ins, "another", I(123));
    return ins;
}

static void c_113(case_out *o) { ins_out(o, ins2()); }

static void c_114(case_out *o)
{
    qb_insert *ins = ins2();
    qb_insert_returning(ins, "id");
    ins_out(o, ins);
}

static void ins_ret2(case_out *o, qb_conflict c)
{
    qb_insert *ins = ins2();
    qb_insert_returning(ins, "id");
    qb_insert_returning(ins, "my_field");
    qb_insert_or(ins, c);
    ins_out(o, ins);
}

static void c_115(case_out *o) { ins_ret2(o, QB_CONFLICT_NONE); }
static void c_116(case_out *o) { ins_ret2(o, QB_CONFLICT_IGNORE); }
static void c_117(case_out *o) { ins_ret2(o, QB_CONFLICT_REPLACE); }

static void c_118(case_out *o)
{
    qb_insert *ins = qb_insert_new("testTable");
    static const char *const f[] = { "test1", "test2", "test3" };
    static const int64_t a[] = { 123, 456, 789 };
    size_t i;
    for (i = 0; i < 3; i++) {
        qb_insert_set(ins, "my_field", T(f[i]));
        qb_insert_set(ins, "another", I(a[i]));
        qb_insert_next_row(ins);
    }
    qb_insert_returning(ins, "id");
    qb_insert_returning(ins, "my_field");
    qb_insert_or(ins, QB_CONFLICT_REPLACE);
    ins_out(o, ins);
}

static qb_insert *alice(void)
{
    qb_insert *ins = qb_insert_new("phonebook2");
    qb_insert_set(ins, "name", T("Alice"));
    qb_insert_set(ins, "phonenumber", T("704-555-1212"));
    qb_insert_set(ins, "validDate", T("2018-05-08"));
    return ins;
}

static void upsert(case_out *o, int raw, int where)
{
    qb_insert *ins = alice();
    qb_insert_on_conflict(ins, L("name"));
    if (raw) {
        qb_insert_on_conflict_set(ins, "phonenumber",
                                  qb_raw("excluded.phonenumber"));
        qb_insert_on_conflict_set(ins, "validDate",
                                  qb_raw("excluded.validDate"));
    } else {
        qb_insert_on_conflict_set(ins, "phonenumber",
                                  T("excluded.phonenumber"));
        qb_insert_on_conflict_set(ins, "validDate", T("excluded.validDate"));
    }
    if (where == 1)
        qb_insert_on_conflict_where(ins, L("excluded.validDate > ?1"),
                                    V(T("2023-01-01")));
    else if (where == 2)
        qb_insert_on_conflict_where(ins,
            L("excluded.validDate > phonebook2.validDate"), 0, NULL);
    else if (where == 3)
        qb_insert_on_conflict_where(ins, L("excluded.validDate > Date(now())",
                                           "active = true"), 0, NULL);
    ins_out(o, ins);
}

static void c_119(case_out *o) { upsert(o, 0, 0); }
static void c_120(case_out *o) { upsert(o, 0, 1); }
static void c_121(case_out *o) { upsert(o, 0, 2); }
static void c_122(case_out *o) { upsert(o, 1, 1); }
static void c_123(case_out *o) { upsert(o, 1, 3); }

static void c_124(case_out *o)
{
    qb_insert *ins = alice();
    qb_insert_on_conflict(ins, L("name", "phonenumber"));
    qb_insert_on_conflict_set(ins, "validDate", qb_raw("excluded.validDate"));
    qb_insert_on_conflict_where(ins,
        L("excluded.validDate > phonebook2.validDate"), 0, NULL);
    ins_out(o, ins);
}

/* ---- update (125-150) --------------------------------------------------- */

static void c_125(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_data"));
    QB_UPDATE_WHERE(u, "field = ?1", T("test_where"));
    upd_out(o, u);
}

static void c_126(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_data"));
    QB_UPDATE_WHERE(u, "field = true");
    upd_out(o, u);
}

static void c_127(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_data"));
    qb_update_where_list(u, L("field = true", "active = true"), 0, NULL);
    upd_out(o, u);
}

static void upd_raw(case_out *o, const char *cond)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_data"));
    qb_update_set(u, "updated_at", qb_raw("CURRENT_TIMESTAMP"));
    qb_update_set(u, "another", T("123"));
    QB_UPDATE_WHERE(u, cond, T("test_where"));
    upd_out(o, u);
}

static void c_128(case_out *o) { upd_raw(o, "field = ?1"); }
static void c_137(case_out *o) { upd_raw(o, "field = ?"); }

static void upd1(case_out *o, const char *cond, int two)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_update"));
    if (two)
        qb_update_set(u, "another", I(123));
    QB_UPDATE_WHERE(u, cond, T("test"));
    upd_out(o, u);
}

static void c_129(case_out *o) { upd1(o, "field = ?1", 0); }
static void c_130(case_out *o) { upd1(o, "field = ?1", 1); }
static void c_138(case_out *o) { upd1(o, "field = ?", 0); }
static void c_139(case_out *o) { upd1(o, "field = ?", 1); }

/* ret: 0 none, 1 'id', 2 ['id','field'] */
static void upd2(case_out *o, int numbered, int ret, qb_conflict c)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_update"));
    qb_update_set(u, "another", I(123));
    if (numbered)
        qb_update_where_list(u, L("field = ?1", "id = ?2"),
                             V(T("test"), I(345)));
    else
        qb_update_where_list(u, L("field = ?", "id = ?"),
                             V(T("test"), I(345)));
    if (ret >= 1)
        qb_update_returning(u, "id");
    if (ret >= 2)
        qb_update_returning(u, "field");
    qb_update_or(u, c);
    upd_out(o, u);
}

static void c_131(case_out *o) { upd2(o, 1, 0, QB_CONFLICT_NONE); }
static void c_132(case_out *o) { upd2(o, 1, 1, QB_CONFLICT_NONE); }
static void c_133(case_out *o) { upd2(o, 1, 2, QB_CONFLICT_NONE); }
static void c_134(case_out *o) { upd2(o, 1, 2, QB_CONFLICT_IGNORE); }
static void c_135(case_out *o) { upd2(o, 1, 2, QB_CONFLICT_REPLACE); }
static void c_136(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_data"));
    QB_UPDATE_WHERE(u, "field = ?", T("test_where"));
    upd_out(o, u);
}
static void c_140(case_out *o) { upd2(o, 0, 0, QB_CONFLICT_NONE); }
static void c_141(case_out *o) { upd2(o, 0, 1, QB_CONFLICT_NONE); }
static void c_142(case_out *o) { upd2(o, 0, 2, QB_CONFLICT_NONE); }
static void c_143(case_out *o) { upd2(o, 0, 2, QB_CONFLICT_IGNORE); }
static void c_144(case_out *o) { upd2(o, 0, 2, QB_CONFLICT_REPLACE); }

static void c_145(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "my_field", T("test_update"));
    qb_update_set(u, "another", I(123));
    qb_update_set(u, "third_field", T("third value"));
    qb_update_where_list(u, L("field = ? AND another_field = ?", "id = ?"),
                         V(T("test"), T("another_test"), I(345)));
    upd_out(o, u);
}

static void c_146(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "status", T("processed"));
    QB_UPDATE_WHERE(u, "owner_id = ?1 OR assignee_id = ?1", T("user456"));
    upd_out(o, u);
}

static void c_147(case_out *o)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, "reviewed", B(1));
    qb_update_where_list(u, L("created_by = ?1", "approved_by = ?1"),
                         V(T("admin_user")));
    upd_out(o, u);
}

static void upd_falsy(case_out *o, const char *col, const char *val,
                      const char *cond, qb_value p)
{
    qb_update *u = qb_update_new("testTable");
    qb_update_set(u, col, T(val));
    qb_update_where(u, cond, 1, &p);
    upd_out(o, u);
}

static void c_148(case_out *o) { upd_falsy(o, "name", "updated", "active = ?1", B(0)); }
static void c_149(case_out *o) { upd_falsy(o, "name", "updated", "count = ?1", I(0)); }
static void c_150(case_out *o) { upd_falsy(o, "status", "active", "label = ?1", T("")); }

/* ---- delete (151-166) --------------------------------------------------- */

static void c_151(case_out *o)
{
    qb_delete *d = qb_delete_new("testTable");
    QB_DELETE_WHERE(d, "field = ?1", T("test"));
    del_out(o, d);
}

static void del_false(case_out *o, int64_t limit, int64_t offset)
{
    qb_delete *d = qb_delete_new("testTable");
    QB_DELETE_WHERE(d, "field = false");
    if (limit >= 0)
        qb_delete_limit(d, limit);
    if (offset >= 0)
        qb_delete_offset(d, offset);
    del_out(o, d);
}

static void c_152(case_out *o) { del_false(o, -1, -1); }
static void c_153(case_out *o) { del_false(o, 10, -1); }
static void c_154(case_out *o) { del_false(o, 10, 10); }

static void c_155(case_out *o)
{
    qb_delete *d = qb_delete_new("testTable");
    qb_delete_where_list(d, L("field = false", "active = false"), 0, NULL);
    del_out(o, d);
}

/* ret 0..2, order, limit */
static void del2(case_out *o, int ret, int order, int64_t limit)
{
    qb_delete *d = qb_delete_new("testTable");
    qb_delete_where_list(d, L("field = ?1", "id = ?2"), V(T("test"), I(123)));
    if (ret >= 1)
        qb_delete_returning(d, "id");
    if (ret >= 2)
        qb_delete_returning(d, "field");
    if (order)
        qb_delete_order_by(d, "id", QB_ORDER_NONE);
    if (limit >= 0)
        qb_delete_limit(d, limit);
    del_out(o, d);
}

static void c_156(case_out *o) { del2(o, 0, 0, -1); }
static void c_157(case_out *o) { del2(o, 1, 0, -1); }
static void c_158(case_out *o) { del2(o, 2, 0, -1); }
static void c_159(case_out *o) { del2(o, 2, 0, 10000); }
static void c_160(case_out *o) { del2(o, 2, 1, 10000); }

static void c_161(case_out *o)
{
    qb_delete *d = qb_delete_new("testTable");
    QB_DELETE_WHERE(d, "active = ?1", B(0));
    qb_delete_returning(d, "id");
    qb_delete_order_by(d, "id", QB_ORDER_NONE);
    qb_delete_limit(d, 100);
    qb_delete_offset(d, 10);
    del_out(o, d);
}

static void c_162(case_out *o)
{
    qb_delete *d = qb_delete_new("testTable");
    QB_DELETE_WHERE(d, "owner_id = ?1 OR created_by = ?1", T("user123"));
    del_out(o, d);
}

static void c_163(case_out *o)
{
    qb_delete *d = qb_delete_new("testTable");
    qb_delete_where_list(d, L("user_id = ?1", "approver_id = ?1"),
                         V(T("admin")));
    del_out(o, d);
}

static void del_falsy(case_out *o, const char *cond, qb_value p)
{
    qb_delete *d = qb_delete_new("testTable");
    qb_delete_where(d, cond, 1, &p);
    del_out(o, d);
}

static void c_164(case_out *o) { del_falsy(o, "active = ?1", B(0)); }
static void c_165(case_out *o) { del_falsy(o, "count = ?1", I(0)); }
static void c_166(case_out *o) { del_falsy(o, "label = ?1", T("")); }

/* ---- raw (167-173) ------------------------------------------------------ */

static void c_167(case_out *o)
{
    o->rc = QB_RAW(&o->q, "SELECT * FROM testTable WHERE name = ?1",
                   QB_FETCH_ALL, T("testName"));
}

static void c_168(case_out *o)
{
    o->rc = QB_RAW(&o->q, "SELECT * FROM testTable WHERE id = ?1",
                   QB_FETCH_ONE, I(1));
}

static void c_169(case_out *o)
{
    o->rc = QB_RAW(&o->q, "SELECT * FROM testTable", QB_FETCH_NONE);
}

static void c_170(case_out *o)
{
    o->rc = QB_RAW(&o->q, "INSERT INTO testTable (name, value) VALUES (?1, ?2)",
                   QB_FETCH_NONE, T("newName"), I(100));
}

static void c_171(case_out *o)
{
    o->rc = QB_RAW(&o->q, "UPDATE testTable SET name = ?1 WHERE id = ?2",
                   QB_FETCH_NONE, T("updatedName"), I(2));
}

static void c_172(case_out *o)
{
    o->rc = QB_RAW(&o->q, "DELETE FROM testTable WHERE id = ?1",
                   QB_FETCH_NONE, I(3));
}

static void c_173(case_out *o)
{
    o->rc = QB_RAW(&o->q,
                   "SELECT * FROM anotherTable WHERE col1 = ? AND col2 = ?",
                   QB_FETCH_ALL, T("val1"), T("val2"));
}

/* ---- toSQL / toDebugSQL / distinct / joins / set ops / CTE (181-205) --- */

static void c_181(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "id = ?", I(1));
    QB_WHERE(s, "status = ?", T("active"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_182(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "id = ?", I(1));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_183(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "id = ?", I(1));
    QB_WHERE(s, "name = ?", T("O'Brien"));
    sel_out(o, s, QB_FETCH_ALL);
    if (o->rc == QB_OK)
        o->text = qb_query_debug_sql(o->q);
}

static void c_184(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_distinct(s);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_185(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_distinct(s);
    qb_select_fields(s, "id");
    qb_select_fields(s, "name");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_186(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_distinct_on(s, "department");
    qb_select_fields(s, "department");
    qb_select_fields(s, "name");
    sel_out(o, s, QB_FETCH_ALL);
}

static void helper_join(case_out *o,
                        void (*fn)(qb_select *, const char *, const char *,
                                   const char *))
{
    qb_select *s = qb_select_new("users");
    fn(s, "orders", NULL, "users.id = orders.user_id");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_187(case_out *o) { helper_join(o, qb_select_inner_join); }
static void c_188(case_out *o) { helper_join(o, qb_select_left_join); }
static void c_189(case_out *o) { helper_join(o, qb_select_right_join); }
static void c_190(case_out *o) { helper_join(o, qb_select_full_join); }

static void c_191(case_out *o)
{
    qb_select *s = qb_select_new("orders");
    qb_select_cross_join(s, "products", NULL);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_192(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_natural_join(s, "profiles");
    sel_out(o, s, QB_FETCH_ALL);
}

static qb_select *sel_f(const char *table, const char *f1, const char *f2)
{
    qb_select *s = qb_select_new(table);
    qb_select_fields(s, f1);
    if (f2 != NULL)
        qb_select_fields(s, f2);
    return s;
}

static void setop(case_out *o, qb_select *s, qb_setop op, qb_select *other)
{
    qb_select_set_op(s, op, other);
    qb_select_free(other);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_193(case_out *o)
{
    setop(o, sel_f("active_users", "id", "name"), QB_UNION,
          sel_f("archived_users", "id", "name"));
}

static void c_194(case_out *o)
{
    setop(o, sel_f("table1", "id", NULL), QB_UNION_ALL,
          sel_f("table2", "id", NULL));
}

static void c_195(case_out *o)
{
    setop(o, sel_f("users", "id", NULL), QB_INTERSECT,
          sel_f("admins", "user_id", NULL));
}

static void c_196(case_out *o)
{
    setop(o, sel_f("all_users", "id", NULL), QB_EXCEPT,
          sel_f("blocked_users", "user_id", NULL));
}

static void c_197(case_out *o)
{
    qb_select *s = sel_f("table1", "id", NULL), *t2 = sel_f("table2", "id", NULL);
    qb_select_set_op(s, QB_UNION, t2);
    qb_select_free(t2);
    setop(o, s, QB_UNION, sel_f("table3", "id", NULL));
}

static void c_198(case_out *o)
{
    qb_select *s = sel_f("table1", "id", NULL), *t2 = sel_f("table2", "id", NULL);
    qb_select_set_op(s, QB_UNION, t2);
    qb_select_free(t2);
    qb_select_order_by(s, "id", QB_ORDER_ASC);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_199(case_out *o)
{
    qb_select *s = qb_select_new("orders"), *c = qb_select_new("users");
    QB_WHERE(c, "status = ?", T("active"));
    qb_select_with(s, "active_users", c, 0, NULL);
    qb_select_join(s, NULL, "active_users", NULL,
                   "orders.user_id = active_users.id");
    qb_select_free(c);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_200(case_out *o)
{
    qb_select *s = qb_select_new("combined");
    qb_select *c1 = qb_select_new("table1"), *c2 = qb_select_new("table2");
    QB_WHERE(c1, "x = ?", I(1));
    QB_WHERE(c2, "y = ?", I(2));
    qb_select_with(s, "cte1", c1, 0, NULL);
    qb_select_with(s, "cte2", c2, 0, NULL);
    qb_select_free(c1);
    qb_select_free(c2);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_201(case_out *o)
{
    qb_select *s = qb_select_new("results");
    qb_select *c = sel_f("users", "id", "count(*) as cnt");
    qb_select_group_by(c, "id");
    qb_select_with(s, "user_stats", c, L("user_id", "count"));
    qb_select_free(c);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_202(case_out *o) { c_182(o); }

static void lim_off(case_out *o, int64_t lim, int64_t off)
{
    qb_select *s = qb_select_new("users");
    qb_select_limit(s, lim);
    if (off >= 0)
        qb_select_offset(s, off);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_203(case_out *o) { lim_off(o, 20, -1); }
static void c_204(case_out *o) { lim_off(o, 20, (2 - 1) * 20); }
static void c_205(case_out *o) { lim_off(o, 10, (5 - 1) * 10); }

/* ---- errors (206-218, 225) --------------------------------------------- */

static void c_206(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "id = ? AND status = ?", I(1));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_207(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "id = ?", I(1), I(2), I(3));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_208(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_group_by(s, "status");
    QB_HAVING(s, "COUNT(*) > ? AND SUM(amount) > ?", I(5));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_209(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_group_by(s, "status");
    QB_HAVING(s, "COUNT(*) > ?", I(5), I(10), I(15));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_210(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_list(s, QB_AND, L("id = ? AND status = ?"), V(I(1)));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_211(case_out *o)
{
    /* data: [] -- no row at all */
    ins_out(o, qb_insert_new("users"));
}

static void paginate(case_out *o, int64_t page, int64_t per_page)
{
    qb_select *s = qb_select_new("users");
    qb_select_paginate(s, page, per_page);
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_212(case_out *o) { paginate(o, 0, 10); }
static void c_213(case_out *o) { paginate(o, -1, 10); }
static void c_214(case_out *o) { paginate(o, 1, 0); }
static void c_215(case_out *o) { paginate(o, 1, -5); }

static void c_225(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "a = ?", I(1));
    QB_OR_WHERE(s, "b = ? AND c = ?", I(2));
    sel_out(o, s, QB_FETCH_ALL);
}

/* ---- orWhere (219-237) -------------------------------------------------- */

static void c_219(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "status = ?", T("active"));
    QB_OR_WHERE(s, "status = ?", T("pending"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_220(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_OR_WHERE(s, "status = ?", T("active"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_221(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "tenant_id = ?", I(1));
    QB_WHERE(s, "status = ?", T("active"));
    QB_OR_WHERE(s, "role = ?", T("superadmin"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_222(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "status = ?", T("active"));
    QB_OR_WHERE(s, "status = ?", T("pending"));
    QB_WHERE(s, "tenant_id = ?", I(42));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_223(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "tenant_id = ?", I(1));
    qb_select_where_list(s, QB_OR, L("role = ?", "is_active = ?"),
                         V(T("admin"), B(1)));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_224(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "a = ?", I(1));
    QB_OR_WHERE(s, "b = ?", I(2));
    QB_OR_WHERE(s, "c = ?", I(3));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_226(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "active = ?", B(1));
    qb_select_where_null(s, QB_OR, "deleted_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_227(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_null(s, QB_AND, "deleted_at");
    qb_select_where_null(s, QB_OR | QB_NOT, "verified_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_228(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_null(s, QB_OR, "deleted_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_229(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_null(s, QB_OR | QB_NOT, "verified_at");
    sel_out(o, s, QB_FETCH_ALL);
}

static void or_between(case_out *o, const char *pre, unsigned how)
{
    qb_select *s = qb_select_new("products");
    if (pre != NULL)
        QB_WHERE(s, pre, B(1));
    qb_select_where_between(s, how, "price", I(10), I(100));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_230(case_out *o) { or_between(o, "featured = ?", QB_OR); }
static void c_231(case_out *o) { or_between(o, "active = ?", QB_OR | QB_NOT); }
static void c_232(case_out *o) { or_between(o, NULL, QB_OR); }
static void c_233(case_out *o) { or_between(o, NULL, QB_OR | QB_NOT); }

static void c_234(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_like(s, QB_AND, "name", T("%john%"));
    qb_select_where_like(s, QB_OR, "email", T("%john%"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_235(case_out *o)
{
    qb_select *s = qb_select_new("users");
    QB_WHERE(s, "active = ?", B(1));
    qb_select_where_like(s, QB_OR | QB_NOT, "email", T("%@spam.com"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_236(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_like(s, QB_OR, "name", T("%alice%"));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_237(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_where_like(s, QB_OR | QB_NOT, "email", T("%@spam.com"));
    sel_out(o, s, QB_FETCH_ALL);
}

/* ---- PostgreSQL dialect (238-245) --------------------------------------- */

static void c_238(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_dialect(s, QB_DIALECT_POSTGRES);
    QB_WHERE(s, "id = ?", I(42));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_239(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_dialect(s, QB_DIALECT_POSTGRES);
    qb_select_where_list(s, QB_AND, L("id = ?", "status = ?"),
                         V(I(42), T("active")));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_240(case_out *o)
{
    qb_update *u = qb_update_new("users");
    qb_update_dialect(u, QB_DIALECT_POSTGRES);
    QB_UPDATE_WHERE(u, "id = ?1", I(42));
    qb_update_set(u, "name", T("Alice"));
    upd_out(o, u);
}

static void c_241(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_dialect(s, QB_DIALECT_POSTGRES);
    QB_WHERE(s, "id = ?", I(42));
    QB_WHERE(s, "active = ?", B(1));
    sel_out(o, s, QB_FETCH_ALL);
}

static void c_242(case_out *o)
{
    qb_select *s = qb_select_new("users");
    qb_select_dialect(s, QB_DIALECT_POSTGRES);
    sel_out(o, s, QB_FETCH_ALL);
}

/* The migration runner's PostgreSQL statements, built with this library:
 * the runner itself (transactions, bookkeeping) is the executor's. */
static const char pg_mig_schema[] =
    "id SERIAL PRIMARY KEY, name TEXT UNIQUE, applied_at TIMESTAMP "
    "DEFAULT CURRENT_TIMESTAMP NOT NULL";

static void c_243(case_out *o)
{
    o->rc = qb_create_table(&o->q, QB_DIALECT_POSTGRES, "migrations",
                            pg_mig_schema, 1);
}

static void pg_migration(case_out *o, const char *name, const char *sql)
{
    qb_select *s;
    int rc;

    rc = qb_create_table(&o->hist[0], QB_DIALECT_POSTGRES, "migrations",
                         pg_mig_schema, 1);
    s = qb_select_new("migrations");
    qb_select_dialect(s, QB_DIALECT_POSTGRES);
    qb_select_order_by(s, "id", QB_ORDER_NONE);
    if (rc == QB_OK)
        rc = qb_select_build(s, QB_FETCH_ALL, &o->hist[1]);
    qb_select_free(s);
    if (rc == QB_OK)
        rc = qb_query_raw_dialect(&o->hist[2], QB_DIALECT_POSTGRES, "BEGIN",
                                  0, NULL, QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_query_raw_dialect(&o->hist[3], QB_DIALECT_POSTGRES, sql, 0,
                                  NULL, QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_query_raw_dialect(&o->hist[4], QB_DIALECT_POSTGRES,
                                  "INSERT INTO migrations (name) values (?);",
                                  1, QB_VALS(T(name)), QB_FETCH_NONE);
    if (rc == QB_OK)
        rc = qb_query_raw_dialect(&o->hist[5], QB_DIALECT_POSTGRES, "COMMIT",
                                  0, NULL, QB_FETCH_NONE);
    o->nhist = 6;
    o->rc = rc;
}

static void c_244(case_out *o)
{
    pg_migration(o, "0001_create_users_table.sql",
                 "CREATE TABLE users (id SERIAL PRIMARY KEY);");
}

static void c_245(case_out *o)
{
    pg_migration(o, "0001_create_users_table.sql",
                 "CREATE TABLE users (id SERIAL PRIMARY KEY); CREATE INDEX "
                 "users_id_idx ON users (id);");
}

/* ---- logger (246, 247): the statement the logger would receive --------- */

static void c_246(case_out *o)
{
    qb_select *s = qb_select_new("testTable");
    qb_select_fields(s, "id");
    qb_select_fields(s, "name");
    QB_WHERE(s, "field = ?1", T("test"));
    sel_out(o, s, QB_FETCH_ALL);
}

/* ---- the table ---------------------------------------------------------- */

typedef struct case_entry {
    int id;
    case_fn fn;         /* NULL: not expressible, see note */
    const char *note;   /* why a case is handled differently */
    const char *fixed;  /* corrected SQL where we fix a workers-qb bug; it
                           is also run on SQLite (fixed_schema) */
} case_entry;

/* Schema the corrected statements run against. */
static const char fixed_schema[] =
    "CREATE TABLE testTable(id INTEGER PRIMARY KEY, field, active, "
    "my_field, another);"
    "INSERT INTO testTable VALUES (1, 'test', 0, 'a', 1), "
    "(2, 'x', 0, 'b', 2), (123, 'test', 1, 'c', 3);";

/* workers-qb 1.14.0 (#157) puts RETURNING after ORDER BY/LIMIT/OFFSET in
 * DELETE; SQLite's grammar wants it before them ("near RETURNING: syntax
 * error").  Found by tests/fuzz/fuzz_qb.c. */
#define FIX_DELETE_RETURNING "RETURNING moved before ORDER BY/LIMIT: SQLite " \
    "rejects workers-qb's order"

static const case_entry case_table[] = {
    { 1, c_all, NULL, NULL }, { 2, c_all, NULL, NULL }, { 3, c_all, NULL, NULL },
    { 4, c_all, NULL, NULL }, { 5, c_one, NULL, NULL }, { 6, c_one, NULL, NULL },
    { 7, c_7, NULL, NULL }, { 8, c_7, NULL, NULL }, { 9, c_9, NULL, NULL },
    { 10, c_10, NULL, NULL }, { 11, c_10, NULL, NULL }, { 12, c_12, NULL, NULL },
    { 13, c_12, NULL, NULL }, { 14, c_14, NULL, NULL }, { 15, c_14, NULL, NULL },
    { 16, c_16, NULL, NULL }, { 17, c_16, NULL, NULL },
    { 18, c_18, "count: compares the count statement; rows counted by "
                "check_qb_conn", NULL },
    { 19, c_19, "count", NULL }, { 20, c_20, "count", NULL }, { 21, c_21, "count", NULL },
    { 22, c_22, NULL, NULL }, { 23, c_23, NULL, NULL }, { 24, c_24, NULL, NULL },
    { 25, c_25, NULL, NULL }, { 26, c_26, NULL, NULL }, { 27, c_26, NULL, NULL },
    { 28, c_28, "execute: compares the executed statement", NULL },
    { 29, c_28, "execute", NULL }, { 30, c_30, "count", NULL }, { 31, c_30, "count", NULL },
    { 32, c_32, NULL, NULL }, { 33, c_32, NULL, NULL }, { 34, c_34, NULL, NULL },
    { 35, c_34, NULL, NULL }, { 36, c_36, "count", NULL }, { 37, c_36, "count", NULL },
    { 38, c_38, NULL, NULL }, { 39, c_38, NULL, NULL }, { 40, c_40, NULL, NULL },
    { 41, c_41, NULL, NULL }, { 42, c_42, NULL, NULL }, { 43, c_43, NULL, NULL },
    { 44, c_44, NULL, NULL }, { 45, c_45, NULL, NULL }, { 46, c_46, NULL, NULL },
    { 47, c_47, NULL, NULL }, { 48, c_48, NULL, NULL }, { 49, c_49, NULL, NULL },
    { 50, c_50, NULL, NULL }, { 51, c_51, NULL, NULL }, { 52, c_52, NULL, NULL },
    { 53, c_53, NULL, NULL }, { 54, c_54, NULL, NULL }, { 55, c_55, NULL, NULL },
    { 56, c_56, NULL, NULL }, { 57, c_57, NULL, NULL }, { 58, c_58, NULL, NULL },
    { 59, c_59, NULL, NULL }, { 60, c_59, NULL, NULL }, { 61, c_61, NULL, NULL },
    { 62, c_61, NULL, NULL }, { 63, c_63, NULL, NULL }, { 64, c_64, NULL, NULL },
    { 65, c_65, NULL, NULL }, { 66, c_66, NULL, NULL }, { 67, c_67, NULL, NULL },
    { 68, c_68, NULL, NULL }, { 69, c_69, NULL, NULL }, { 70, c_69, NULL, NULL },
    { 71, c_71, NULL, NULL }, { 72, c_71, NULL, NULL }, { 73, c_73, NULL, NULL },
    { 74, c_73, NULL, NULL }, { 75, c_75, NULL, NULL }, { 76, c_76, NULL, NULL },
    { 77, c_77, NULL, NULL }, { 78, c_78, NULL, NULL }, { 79, c_79, NULL, NULL },
    { 80, c_80, NULL, NULL }, { 81, c_81, NULL, NULL }, { 82, c_82, NULL, NULL },
    { 83, c_83, NULL, NULL }, { 84, c_84, NULL, NULL }, { 85, c_85, NULL, NULL },
    { 86, c_falsy, NULL, NULL }, { 87, c_falsy, NULL, NULL }, { 88, c_falsy, NULL, NULL },
    { 89, c_falsy, NULL, NULL }, { 90, c_falsy, NULL, NULL }, { 91, c_91, NULL, NULL },
    { 92, c_92, NULL, NULL }, { 93, c_93, NULL, NULL }, { 94, c_falsy, NULL, NULL },
    { 95, c_falsy, NULL, NULL }, { 96, c_falsy, NULL, NULL }, { 97, c_falsy, NULL, NULL },
    { 98, c_falsy, NULL, NULL }, { 99, c_99, NULL, NULL }, { 100, c_100, NULL, NULL },
    { 101, c_101, NULL, NULL }, { 102, c_102, NULL, NULL }, { 103, c_103, NULL, NULL },
    { 104, c_104, NULL, NULL }, { 105, c_105, NULL, NULL }, { 106, c_106, NULL, NULL },
    { 107, c_107, NULL, NULL }, { 108, c_108, NULL, NULL }, { 109, c_109, NULL, NULL },
    { 110, c_110, NULL, NULL }, { 111, c_111, NULL, NULL }, { 112, c_112, NULL, NULL },
    { 113, c_113, NULL, NULL }, { 114, c_114, NULL, NULL }, { 115, c_115, NULL, NULL },
    { 116, c_116, NULL, NULL }, { 117, c_117, NULL, NULL }, { 118, c_118, NULL, NULL },
    { 119, c_119, NULL, NULL }, { 120, c_120, NULL, NULL }, { 121, c_121, NULL, NULL },
    { 122, c_122, NULL, NULL }, { 123, c_123, NULL, NULL }, { 124, c_124, NULL, NULL },
    { 125, c_125, NULL, NULL }, { 126, c_126, NULL, NULL }, { 127, c_127, NULL, NULL },
    { 128, c_128, NULL, NULL }, { 129, c_129, NULL, NULL }, { 130, c_130, NULL, NULL },
    { 131, c_131, NULL, NULL }, { 132, c_132, NULL, NULL }, { 133, c_133, NULL, NULL },
    { 134, c_134, NULL, NULL }, { 135, c_135, NULL, NULL }, { 136, c_136, NULL, NULL },
    { 137, c_137, NULL, NULL }, { 138, c_138, NULL, NULL }, { 139, c_139, NULL, NULL },
    { 140, c_140, NULL, NULL }, { 141, c_141, NULL, NULL }, { 142, c_142, NULL, NULL },
    { 143, c_143, NULL, NULL }, { 144, c_144, NULL, NULL }, { 145, c_145, NULL, NULL },
    { 146, c_146, NULL, NULL }, { 147, c_147, NULL, NULL }, { 148, c_148, NULL, NULL },
    { 149, c_149, NULL, NULL }, { 150, c_150, NULL, NULL }, { 151, c_151, NULL, NULL },
    { 152, c_152, NULL, NULL }, { 153, c_153, NULL, NULL }, { 154, c_154, NULL, NULL },
    { 155, c_155, NULL, NULL }, { 156, c_156, NULL, NULL }, { 157, c_157, NULL, NULL },
    { 158, c_158, NULL, NULL }, { 159, c_159, FIX_DELETE_RETURNING,
      "DELETE FROM testTable WHERE (field = ?1) AND (id = ?2) RETURNING id, "
      "field LIMIT 10000" },
    { 160, c_160, FIX_DELETE_RETURNING,
      "DELETE FROM testTable WHERE (field = ?1) AND (id = ?2) RETURNING id, "
      "field ORDER BY id LIMIT 10000" },
    { 161, c_161, FIX_DELETE_RETURNING,
      "DELETE FROM testTable WHERE active = ?1 RETURNING id ORDER BY id "
      "LIMIT 100 OFFSET 10" }, { 162, c_162, NULL, NULL }, { 163, c_163, NULL, NULL },
    { 164, c_164, NULL, NULL }, { 165, c_165, NULL, NULL }, { 166, c_166, NULL, NULL },
    { 167, c_167, NULL, NULL }, { 168, c_168, NULL, NULL }, { 169, c_169, NULL, NULL },
    { 170, c_170, NULL, NULL }, { 171, c_171, NULL, NULL }, { 172, c_172, NULL, NULL },
    { 173, c_173, NULL, NULL }, { 174, c_174, NULL, NULL }, { 175, c_175, NULL, NULL },
    { 176, c_176, NULL, NULL }, { 177, c_177, NULL, NULL }, { 178, c_178, NULL, NULL },
    { 179, c_179, NULL, NULL }, { 180, c_180, NULL, NULL }, { 181, c_181, NULL, NULL },
    { 182, c_182, NULL, NULL }, { 183, c_183, NULL, NULL }, { 184, c_184, NULL, NULL },
    { 185, c_185, NULL, NULL }, { 186, c_186, NULL, NULL }, { 187, c_187, NULL, NULL },
    { 188, c_188, NULL, NULL }, { 189, c_189, NULL, NULL }, { 190, c_190, NULL, NULL },
    { 191, c_191, NULL, NULL }, { 192, c_192, NULL, NULL }, { 193, c_193, NULL, NULL },
    { 194, c_194, NULL, NULL }, { 195, c_195, NULL, NULL }, { 196, c_196, NULL, NULL },
    { 197, c_197, NULL, NULL }, { 198, c_198, NULL, NULL }, { 199, c_199, NULL, NULL },
    { 200, c_200, NULL, NULL }, { 201, c_201, NULL, NULL }, { 202, c_202, NULL, NULL },
    { 203, c_203, NULL, NULL }, { 204, c_204, NULL, NULL }, { 205, c_205, NULL, NULL },
    { 206, c_206, NULL, NULL }, { 207, c_207, NULL, NULL }, { 208, c_208, NULL, NULL },
    { 209, c_209, NULL, NULL }, { 210, c_210, NULL, NULL }, { 211, c_211, NULL, NULL },
    { 212, c_212, NULL, NULL }, { 213, c_213, NULL, NULL }, { 214, c_214, NULL, NULL },
    { 215, c_215, NULL, NULL },
    { 216, NULL, "page 1.5: not expressible, qb_select_paginate takes "
                 "int64_t page (the C type rules out non-integers)", NULL },
    { 217, NULL, "perPage 10.5: not expressible, int64_t per_page", NULL },
    { 218, c_212, NULL, NULL }, { 219, c_219, NULL, NULL }, { 220, c_220, NULL, NULL },
    { 221, c_221, NULL, NULL }, { 222, c_222, NULL, NULL }, { 223, c_223, NULL, NULL },
    { 224, c_224, NULL, NULL }, { 225, c_225, NULL, NULL }, { 226, c_226, NULL, NULL },
    { 227, c_227, NULL, NULL }, { 228, c_228, NULL, NULL }, { 229, c_229, NULL, NULL },
    { 230, c_230, NULL, NULL }, { 231, c_231, NULL, NULL }, { 232, c_232, NULL, NULL },
    { 233, c_233, NULL, NULL }, { 234, c_234, NULL, NULL }, { 235, c_235, NULL, NULL },
    { 236, c_236, NULL, NULL }, { 237, c_237, NULL, NULL }, { 238, c_238, NULL, NULL },
    { 239, c_239, NULL, NULL }, { 240, c_240, NULL, NULL }, { 241, c_241, NULL, NULL },
    { 242, c_242, NULL, NULL },
    { 243, c_243, "pg migrations initialize(): the CREATE TABLE statement", NULL },
    { 244, c_244, "pg migrations apply(): the six statements; running them "
                  "in a transaction is the executor's (check_qb_conn)", NULL },
    { 245, c_245, "pg migrations apply(): multi-command migration text", NULL },
    { 246, c_246, "logger: the statement logged; logger calls and duration "
                  "are checked by check_qb_conn", NULL },
    { 247, c_246, "logger on error: same statement; the failing run is "
                  "check_qb_conn's", NULL },
};

#define NCASES (sizeof case_table / sizeof case_table[0])
