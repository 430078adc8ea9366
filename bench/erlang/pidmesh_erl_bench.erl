%% pidmesh_erl_bench: the pidmesh benchmark workloads measured on Erlang/OTP
%% (pg and :global), on three distributed Erlang nodes on loopback.
%%
%% Started by run.sh as a *hidden* controller node (ctl). The controller
%% starts the three measured nodes with the `peer` module, drives them with
%% erpc and writes one JSON object to a result file. The controller is hidden,
%% so neither pg nor global on the measured nodes ever sees it: the measured
%% cluster is exactly n1, n2, n3. Each workload (pg, global) gets three fresh
%% nodes, so one workload's leftovers cannot slow the other.
%%
%% All timing of a workload happens *on n1* (the issuing node) with
%% erlang:monotonic_time/1, including the visibility poller, so no clocks of
%% different VMs are compared. See README.md for the exact definitions.
-module(pidmesh_erl_bench).

-export([main/1]).
%% run on the measured nodes through erpc
-export([pg_bulk/3, pg_bulk/4, pg_lookup/2, pg_lookup_hot/3, pg_verify/2,
         global_bulk/3, global_lookup/2, global_verify/3,
         spawn_idle/1, count_pg/0, count_global/0, stop_pids/1]).

-define(POLL_MS, 5).              % sleep between two visibility samples
-define(CURVE_MAX_POINTS, 250).   % pg_curve is thinned to at most this many points
-define(LOOKUP_ROUNDS, 3).        % lookup loop is run this many times, median reported

log(Fmt, Args) ->
    io:format(standard_error, "[erl-bench ~s] " ++ Fmt ++ "~n", [ts() | Args]).

ts() ->
    {_, {H, M, S}} = calendar:local_time(),
    io_lib:format("~2..0B:~2..0B:~2..0B", [H, M, S]).

%%====================================================================
%% controller
%%====================================================================

%% Args (strings): ResultFile PidFile BulkN GlobalN LookupIters ConvTimeoutSecs
main([ResultFile, PidFile, BulkS, GlobalS, ItersS, TimeoutS]) ->
    Code = try
               run(ResultFile, PidFile, list_to_integer(BulkS), list_to_integer(GlobalS),
                   list_to_integer(ItersS), list_to_integer(TimeoutS)),
               0
           catch Class:Reason:Stack ->
                   log("FAILED: ~p:~p~n~p", [Class, Reason, Stack]),
                   1
           end,
    erlang:halt(Code);
main(Other) ->
    log("bad arguments: ~p", [Other]),
    erlang:halt(2).

run(ResultFile, PidFile, BulkN, GlobalN, Iters, ConvTimeoutS)
  when BulkN > 0, GlobalN > 0, Iters > 0 ->
    log("controller ~s, OTP ~s (erts ~s), ~p schedulers, bulk_n=~p global_n=~p lookup_iters=~p",
        [node(), erlang:system_info(otp_release), erlang:system_info(version),
         erlang:system_info(schedulers_online), BulkN, GlobalN, Iters]),
    ConvTimeoutMs = ConvTimeoutS * 1000,
    LoadStart = loadavg1(),
    log("1-minute load average before starting the nodes: ~s", [LoadStart]),

    %% ---- pg ---------------------------------------------------------
    PgNodes = start_cluster("pg", PidFile, BulkN + GlobalN),
    [P1, P2, P3] = [N || {_, N} <- PgNodes],
    pg_sync_check(P1, [P2, P3]),
    log("pg: ~p joins on ~s ...", [BulkN, P1]),
    Bulk = erpc:call(P1, ?MODULE, pg_bulk, [BulkN, [P2, P3], ConvTimeoutMs], infinity),
    #{issue_us := PgIssueUs, all_visible_us := PgVisUs, curve := Curve0} = Bulk,
    log("pg: issued in ~.3f s (~.1f joins/s), visible on all 3 nodes after ~.3f s, ~p samples",
        [PgIssueUs / 1.0e6, BulkN / (PgIssueUs / 1.0e6), PgVisUs / 1.0e6, length(Curve0)]),
    [ok = erpc:call(N, ?MODULE, pg_verify, [BulkN, P1], infinity) || N <- [P1, P2, P3]],
    log("pg: verified: exactly the ~p groups, one member each, on all 3 nodes", [BulkN]),
    GmNs1 = erpc:call(P1, ?MODULE, pg_lookup, [BulkN, Iters], infinity),
    GmNs2 = erpc:call(P2, ?MODULE, pg_lookup, [BulkN, Iters], infinity),
    GmHot = erpc:call(P1, ?MODULE, pg_lookup_hot, [BulkN, Iters, 1000], infinity),
    log("pg: get_members ~.1f ns/call on ~s (local members), ~.1f ns/call on ~s; "
        "~.1f ns/call on ~s cycling over only 1000 distinct groups",
        [GmNs1, P1, GmNs2, P2, GmHot, P1]),
    stop_cluster(PgNodes),

    %% ---- global -----------------------------------------------------
    GlNodes = start_cluster("gl", PidFile, BulkN + GlobalN),
    [G1, G2, G3] = [N || {_, N} <- GlNodes],
    [ok = erpc:call(N, global, sync, [], 60000) || N <- [G1, G2, G3]],
    log("global: ~p register_name calls on ~s ...", [GlobalN, G1]),
    GB = erpc:call(G1, ?MODULE, global_bulk, [GlobalN, [G2, G3], ConvTimeoutMs], infinity),
    #{issue_us := GlIssueUs, all_visible_us := GlVisUs} = GB,
    log("global: issued in ~.3f s (~.1f regs/s), visible on all 3 nodes after ~.3f s",
        [GlIssueUs / 1.0e6, GlobalN / (GlIssueUs / 1.0e6), GlVisUs / 1.0e6]),
    [ok = erpc:call(N, ?MODULE, global_verify, [GlobalN, G1, maps:get(base, GB)], infinity)
     || N <- [G1, G2, G3]],
    log("global: verified: all ~p names resolve via whereis_name on all 3 nodes", [GlobalN]),
    WhNs1 = erpc:call(G1, ?MODULE, global_lookup, [GlobalN, Iters], infinity),
    WhNs2 = erpc:call(G2, ?MODULE, global_lookup, [GlobalN, Iters], infinity),
    log("global: whereis_name ~.1f ns/call on ~s (local pids), ~.1f ns/call on ~s",
        [WhNs1, G1, WhNs2, G2]),
    stop_cluster(GlNodes),

    Curve = thin(Curve0, ?CURVE_MAX_POINTS),
    Obj = [{otp_release, {str, erlang:system_info(otp_release)}},
           {pg_bulk_n, BulkN},
           {pg_bulk_secs, PgVisUs / 1.0e6},
           {pg_joins_per_sec, BulkN / (PgIssueUs / 1.0e6)},
           {pg_get_members_ns, GmNs1},
           {global_n, GlobalN},
           {global_regs_per_sec, GlobalN / (GlIssueUs / 1.0e6)},
           {global_visible_secs, GlVisUs / 1.0e6},
           {global_whereis_ns, WhNs1},
           {pg_curve, {raw, curve_json(Curve)}},
           %% extra context, not part of the required schema
           {erts_version, {str, erlang:system_info(version)}},
           {pg_issue_secs, PgIssueUs / 1.0e6},
           {pg_get_members_ns_node2, GmNs2},
           {pg_get_members_ns_hot1k, GmHot},
           {global_issue_secs, GlIssueUs / 1.0e6},
           {global_whereis_ns_node2, WhNs2},
           {lookup_iters, Iters},
           {poll_ms, ?POLL_MS},
           {loadavg_1m_start, {raw, LoadStart}},
           {loadavg_1m_end, {raw, loadavg1()}}],
    ok = file:write_file(ResultFile, [json_obj(Obj), $\n]),
    log("done", []),
    ok.

%% Start three fresh peer nodes Name@127.0.0.1, fully meshed, visible to each
%% other, hidden from the controller's point of view (the controller is hidden).
start_cluster(Tag, PidFile, Procs) ->
    Cookie = atom_to_list(erlang:get_cookie()),
    [_, Host] = string:split(atom_to_list(node()), "@"),
    CodeDir = filename:dirname(code:which(?MODULE)),
    %% peers carry the controller's tag (run.sh's pid) so run.sh can recognise them
    "pmb_ctl_" ++ Uniq = hd(string:split(atom_to_list(node()), "@")),
    Args = ["-setcookie", Cookie,
            "-pa", CodeDir,
            "-kernel", "start_pg", "true",                      % default pg scope
            "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
            "-kernel", "net_ticktime", "60",
            "+P", integer_to_list(max(1048576, 2 * Procs))],
    Peers = [begin
                 Name = lists:flatten(io_lib:format("pmb_~s~b_~s", [Tag, I, Uniq])),
                 {ok, PeerPid, Node} = peer:start_link(#{name => Name, host => Host,
                                                         longnames => true,
                                                         args => Args,
                                                         wait_boot => 60000}),
                 OsPid = erpc:call(Node, os, getpid, []),
                 ok = file:write_file(PidFile, [OsPid, $\n], [append]),
                 log("started ~s (os pid ~s)", [Node, OsPid]),
                 {PeerPid, Node}
             end || I <- [1, 2, 3]],
    Nodes = [N || {_, N} <- Peers],
    %% full mesh of visible connections between the measured nodes
    [true = erpc:call(A, net_kernel, connect_node, [B]) || A <- Nodes, B <- Nodes, A < B],
    wait_until(fun() ->
                       lists:all(fun(N) ->
                                         lists:sort(erpc:call(N, erlang, nodes, [])) =:=
                                             lists:sort(Nodes -- [N])
                                 end, Nodes)
               end, 30000, mesh),
    %% the controller must not be part of the measured cluster
    [false = lists:member(node(), erpc:call(N, erlang, nodes, [])) || N <- Nodes],
    Peers.

stop_cluster(Peers) ->
    [peer:stop(P) || {P, _} <- Peers],
    ok.

%% make sure the pg scopes have discovered each other before measuring
pg_sync_check(N1, Others) ->
    Probe = erpc:call(N1, ?MODULE, spawn_idle, [1]),
    ok = erpc:call(N1, pg, join, [pg_probe, Probe]),
    wait_until(fun() -> lists:all(fun(N) -> erpc:call(N, pg, get_members, [pg_probe]) =:= Probe end,
                                  Others) end, 30000, pg_probe_join),
    ok = erpc:call(N1, pg, leave, [pg_probe, Probe]),
    ok = erpc:call(N1, ?MODULE, stop_pids, [Probe]),
    wait_until(fun() -> lists:all(fun(N) -> erpc:call(N, ?MODULE, count_pg, []) =:= 0 end,
                                  [N1 | Others]) end, 30000, pg_probe_leave),
    ok.

wait_until(F, Timeout, What) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_until_(F, Deadline, What).
wait_until_(F, Deadline, What) ->
    case F() of
        true -> ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({timeout_waiting_for, What});
                false -> timer:sleep(20), wait_until_(F, Deadline, What)
            end
    end.

%%====================================================================
%% executed on the measured nodes
%%====================================================================

%% N idle processes (a list, index order); they exit on any message
spawn_idle(N) when is_integer(N) ->
    [spawn(fun idle/0) || _ <- lists:seq(1, N)].
idle() -> receive _ -> ok end.

stop_pids(Pids) when is_list(Pids) -> [P ! stop || P <- Pids], ok;
stop_pids(Pid) -> stop_pids([Pid]).

%% number of groups in the default pg scope on this node (rows of pg's ETS
%% table, one per group with >= 1 member; == length(pg:which_groups()) but O(1))
count_pg() -> ets:info(pg, size).

%% number of names in global's name table on this node (the table that
%% global:whereis_name/1 reads)
count_global() -> ets:info(global_names, size).

%% --- pg bulk ---------------------------------------------------------
%% On the issuing node: N pre-spawned processes, process I joins group
%% {name, I}; the joins are issued back to back from one process. A poller
%% process on this node samples the group count on every node every POLL_MS.
pg_bulk(N, Peers, TimeoutMs) ->
    pg_bulk(N, Peers, TimeoutMs, ?POLL_MS).
pg_bulk(N, Peers, TimeoutMs, PollMs) ->
    0 = count_pg(),
    Pids = spawn_idle(N),
    erlang:garbage_collect(),
    Self = self(),
    Poller = spawn_link(fun() -> receive {go, T0} -> poll(Self, T0, N, Peers, fun count_pg/0, TimeoutMs, PollMs) end end),
    T0 = erlang:monotonic_time(microsecond),
    Poller ! {go, T0},
    ok = join_all(Pids, 1),
    T1 = erlang:monotonic_time(microsecond),
    receive
        {poll_done, Poller, AllVisibleUs, Samples} ->
            #{issue_us => T1 - T0,
              all_visible_us => AllVisibleUs,
              curve => [[Ms, C2, C3] || {Ms, _C1, C2, C3} <- Samples]};
        {poll_timeout, Poller, Samples} ->
            error({pg_not_converged, TimeoutMs, lists:last(Samples)})
    end.

join_all([Pid | T], I) ->
    ok = pg:join({name, I}, Pid),
    join_all(T, I + 1);
join_all([], _) -> ok.

%% Samples {ms_since_T0, count_here, count_peer1, count_peer2} until every
%% node reports >= Target. The time recorded for a sample is taken after the
%% remote counts came back (so "visible at t" is an upper bound, never early).
poll(Parent, T0, Target, [A, B], CountFun, TimeoutMs, PollMs) ->
    put(poll_ms, PollMs),
    poll_(Parent, T0, Target, A, B, CountFun, TimeoutMs * 1000, []).
poll_(Parent, T0, Target, A, B, CountFun, TimeoutUs, Acc) ->
    Here = CountFun(),
    [{ok, Ca}, {ok, Cb}] = erpc:multicall([A, B], erlang, apply, [CountFun, []], 10000),
    Now = erlang:monotonic_time(microsecond) - T0,
    Acc1 = [{Now div 1000, Here, Ca, Cb} | Acc],
    if Here >= Target, Ca >= Target, Cb >= Target ->
            Parent ! {poll_done, self(), Now, lists:reverse(Acc1)};
       Now > TimeoutUs ->
            Parent ! {poll_timeout, self(), lists:reverse(Acc1)};
       true ->
            timer:sleep(get(poll_ms)),
            poll_(Parent, T0, Target, A, B, CountFun, TimeoutUs, Acc1)
    end.

%% every node: exactly the N groups, each with exactly one member living on Origin
pg_verify(N, Origin) ->
    N = length(pg:which_groups()),
    check_groups(N, Origin).
check_groups(0, _) -> ok;
check_groups(I, Origin) ->
    case pg:get_members({name, I}) of
        [P] when node(P) =:= Origin -> check_groups(I - 1, Origin);
        Other -> error({bad_group, node(), I, Other})
    end.

%% --- pg lookup -------------------------------------------------------
%% ns per pg:get_members/1 call: a loop of Iters calls over a pre-generated
%% list of random existing groups, run LOOKUP_ROUNDS times; median round.
pg_lookup(N, Iters) ->
    Keys = [{name, rand:uniform(N)} || _ <- lists:seq(1, Iters)],
    erlang:garbage_collect(),
    median([begin
                T0 = erlang:monotonic_time(nanosecond),
                ok = gm_loop(Keys),
                (erlang:monotonic_time(nanosecond) - T0) / Iters
            end || _ <- lists:seq(1, ?LOOKUP_ROUNDS)]).

%% same loop, but the random keys are drawn from only K distinct groups
%% (a cache-warm working set); for comparison with figures measured that way
pg_lookup_hot(N, Iters, K) ->
    Hot = list_to_tuple([{name, rand:uniform(N)} || _ <- lists:seq(1, K)]),
    Keys = [element(rand:uniform(K), Hot) || _ <- lists:seq(1, Iters)],
    erlang:garbage_collect(),
    median([begin
                T0 = erlang:monotonic_time(nanosecond),
                ok = gm_loop(Keys),
                (erlang:monotonic_time(nanosecond) - T0) / Iters
            end || _ <- lists:seq(1, ?LOOKUP_ROUNDS)]).

gm_loop([G | T]) ->
    [_] = pg:get_members(G),
    gm_loop(T);
gm_loop([]) -> ok.

%% --- global bulk -----------------------------------------------------
global_bulk(M, Peers, TimeoutMs) ->
    %% names already present (none expected); visibility target is Base + M
    Base = count_global(),
    Bases = [erpc:call(P, ?MODULE, count_global, []) || P <- Peers],
    [Base] = lists:usort([Base | Bases]),
    Pids = spawn_idle(M),
    erlang:garbage_collect(),
    CountFun = fun() -> count_global() - Base end,
    T0 = erlang:monotonic_time(microsecond),
    ok = register_all(Pids, 1),
    T1 = erlang:monotonic_time(microsecond),
    %% register_name/2 returns only after every node has stored the name, so
    %% visibility is sampled from the end of the loop on (same poller as pg, run
    %% in this process). Sampling *during* the loop measurably slowed
    %% register_name down on this 2-core machine (~2.5x), i.e. the poller
    %% would have been measured instead of global.
    poll(self(), T0, M, Peers, CountFun, TimeoutMs, ?POLL_MS),
    receive
        {poll_done, _, AllVisibleUs, _Samples} ->
            #{issue_us => T1 - T0, all_visible_us => AllVisibleUs, base => Base};
        {poll_timeout, _, Samples} ->
            error({global_not_converged, TimeoutMs, lists:last(Samples)})
    end.

register_all([Pid | T], I) ->
    yes = global:register_name({n, I}, Pid),
    register_all(T, I + 1);
register_all([], _) -> ok.

global_verify(M, Origin, Base) ->
    M = count_global() - Base,
    check_names(M, Origin).
check_names(0, _) -> ok;
check_names(I, Origin) ->
    case global:whereis_name({n, I}) of
        P when is_pid(P), node(P) =:= Origin -> check_names(I - 1, Origin);
        Other -> error({bad_name, node(), I, Other})
    end.

global_lookup(M, Iters) ->
    Keys = [{n, rand:uniform(M)} || _ <- lists:seq(1, Iters)],
    erlang:garbage_collect(),
    median([begin
                T0 = erlang:monotonic_time(nanosecond),
                ok = wh_loop(Keys),
                (erlang:monotonic_time(nanosecond) - T0) / Iters
            end || _ <- lists:seq(1, ?LOOKUP_ROUNDS)]).

wh_loop([K | T]) ->
    true = is_pid(global:whereis_name(K)),
    wh_loop(T);
wh_loop([]) -> ok.

%%====================================================================
%% helpers
%%====================================================================

median(L) ->
    S = lists:sort(L),
    Len = length(S),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, S);
        0 -> (lists:nth(Len div 2, S) + lists:nth(Len div 2 + 1, S)) / 2
    end.

%% first field of /proc/loadavg, as JSON number text ("null" if unreadable)
loadavg1() ->
    case file:read_file("/proc/loadavg") of
        {ok, B} -> binary_to_list(hd(binary:split(B, <<" ">>)));
        _ -> "null"
    end.

%% keep at most Max points, evenly spaced, always the first and the last
thin(L, Max) when length(L) =< Max -> L;
thin(L, Max) ->
    Len = length(L),
    T = list_to_tuple(L),
    Idx = lists:usort([1 + round(K * (Len - 1) / (Max - 1)) || K <- lists:seq(0, Max - 1)]),
    [element(I, T) || I <- Idx].

curve_json(Curve) ->
    ["[", lists:join(",", [io_lib:format("[~b,~b,~b]", [Ms, A, B]) || [Ms, A, B] <- Curve]), "]"].

json_obj(KVs) ->
    ["{", lists:join(", ", [["\"", atom_to_list(K), "\": ", json_val(V)] || {K, V} <- KVs]), "}"].

json_val({str, S}) -> ["\"", S, "\""];
json_val({raw, R}) -> R;
json_val(I) when is_integer(I) -> integer_to_list(I);
json_val(F) when is_float(F) -> float_to_list(F, [{decimals, 3}, compact]).
