// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {TestBase} from "../utils/Cheats.sol";
import {RevertingReceiver, ReentrantReceiver} from "../utils/Receivers.sol";
import {WayfareMarket} from "../../src/WayfareMarket.sol";

/// @notice Drives the market with random but mostly meaningful calls from a small cast (3
///         sellers, 3 buyers, payouts that accept / re-enter / revert) and keeps its own model
///         of every balance the market owes. A call the model says must succeed but reverts (or
///         the reverse) counts as a violation; the invariant test checks there are none and
///         compares the model with the market's views and its ETH balance.
contract MarketHandler is TestBase {
    uint256 internal constant N_SELLERS = 3;
    uint256 internal constant N_BUYERS = 3;
    uint256 internal constant START_BALANCE = 1_000 ether;

    struct ChannelModel {
        bytes32 id;
        uint8 seller;
        uint8 buyer;
        uint256 voucherKey;
        uint256 deposit;
        uint256 best;
        uint64 closesAt;
        WayfareMarket.ChannelState state;
        uint256 sellerBurn;
        uint256 buyerBurn;
        bool sellerRated;
        bool buyerRated;
    }

    struct SellerModel {
        bool registered;
        bool active;
        uint256 funds;
        uint64 rotation; // index of the current signer key
        uint8 payout; // index into payoutOptions
        uint64 nextNonce;
    }

    WayfareMarket public immutable market;
    address public immutable sink;
    uint64 public immutable period;

    address[N_SELLERS] public sellers;
    address[N_BUYERS] public buyers; // buyers[2] is a re-entrant contract
    address[4] public payoutOptions; // EOA, EOA, re-entrant contract, reverting contract
    ReentrantReceiver public immutable reentrant;
    RevertingReceiver public immutable reverting;

    SellerModel[N_SELLERS] internal sellerModels;
    ChannelModel[] internal channels;
    mapping(address account => uint256) public modelCredit;

    // ghosts: what the market holds, by kind
    uint256 public ghostOpenDeposits;
    uint256 public ghostSellerFunds;
    uint256 public ghostWithdrawable;
    uint256 public ghostBurnsUnswept;
    // ghosts: flows
    uint256 public ghostBurnsTotal;
    uint256 public ghostSwept;
    uint256 public ghostWithdrawn;
    uint256 public ghostDealt; // ETH created by vm.deal for the cast

    uint256 public violations;
    string public lastViolation;
    mapping(bytes4 selector => uint256) public calls;
    /// @dev Calls that went through (the rest were expected reverts).
    mapping(bytes4 selector => uint256) public successes;

    constructor(WayfareMarket market_, address sink_) {
        market = market_;
        sink = sink_;
        period = market_.challengePeriod();
        reentrant = new ReentrantReceiver();
        reverting = new RevertingReceiver();
        // the re-entrant account tries to withdraw again from inside every payment
        reentrant.arm(address(market_), abi.encodeCall(WayfareMarket.withdraw, ()), false);
        for (uint256 i; i < N_SELLERS; i++) {
            sellers[i] = vm.addr(_key(abi.encode("seller", i)));
        }
        buyers[0] = vm.addr(_key("buyer 0"));
        buyers[1] = vm.addr(_key("buyer 1"));
        buyers[2] = address(reentrant);
        payoutOptions[0] = vm.addr(_key("payout 0"));
        payoutOptions[1] = vm.addr(_key("payout 1"));
        payoutOptions[2] = address(reentrant);
        payoutOptions[3] = address(reverting);
        for (uint256 i; i < N_SELLERS; i++) {
            _dealTo(sellers[i], START_BALANCE);
        }
        for (uint256 i; i < N_BUYERS; i++) {
            _dealTo(buyers[i], START_BALANCE);
        }
    }

    // ======================================================================= seller actions

    function registerSeller(uint256 sellerSeed, uint256 value, uint256 payoutSeed) external {
        calls[this.registerSeller.selector]++;
        uint256 s = sellerSeed % N_SELLERS;
        SellerModel storage m = sellerModels[s];
        value = bound(value, 0, 5 ether);
        // forge-lint: disable-next-line(unsafe-typecast) < 4
        uint8 p = uint8(payoutSeed % payoutOptions.length);
        vm.prank(sellers[s]);
        try market.registerSeller{value: value}(_signerOf(s, 0), payoutOptions[p], bytes32(s), "m") {
            successes[this.registerSeller.selector]++;
            _expect(!m.registered, "registerSeller succeeded twice");
            m.registered = true;
            m.active = true;
            m.funds = value;
            m.payout = p;
            ghostSellerFunds += value;
        } catch {
            _expect(m.registered, "registerSeller reverted for a new seller");
        }
    }

    function fundSeller(uint256 sellerSeed, uint256 value) external {
        calls[this.fundSeller.selector]++;
        uint256 s = sellerSeed % N_SELLERS;
        SellerModel storage m = sellerModels[s];
        value = bound(value, 1, 5 ether);
        vm.prank(sellers[s]);
        try market.fundSeller{value: value}() {
            successes[this.fundSeller.selector]++;
            _expect(m.registered, "fundSeller succeeded for an unregistered seller");
            m.funds += value;
            ghostSellerFunds += value;
        } catch {
            _expect(!m.registered, "fundSeller reverted");
        }
    }

    function withdrawSellerFunds(uint256 sellerSeed, uint256 amount) external {
        calls[this.withdrawSellerFunds.selector]++;
        uint256 s = sellerSeed % N_SELLERS;
        SellerModel storage m = sellerModels[s];
        amount = bound(amount, 0, m.funds + 1);
        uint256 before = sellers[s].balance;
        vm.prank(sellers[s]);
        try market.withdrawSellerFunds(amount) {
            successes[this.withdrawSellerFunds.selector]++;
            _expect(m.registered && amount != 0 && amount <= m.funds, "withdrawSellerFunds beyond funds");
            _expect(sellers[s].balance == before + amount, "withdrawSellerFunds paid a wrong amount");
            m.funds -= amount;
            ghostSellerFunds -= amount;
        } catch {
            _expect(!m.registered || amount == 0 || amount > m.funds, "withdrawSellerFunds reverted");
        }
    }

    function toggleActive(uint256 sellerSeed) external {
        calls[this.toggleActive.selector]++;
        uint256 s = sellerSeed % N_SELLERS;
        SellerModel storage m = sellerModels[s];
        if (!m.registered) return;
        vm.prank(sellers[s]);
        if (m.active) market.deactivateSeller();
        else market.reactivateSeller();
        m.active = !m.active;
    }

    /// @dev New signer key (voids the old one's offers and consents) and maybe a new payout.
    function updateSeller(uint256 sellerSeed, uint256 payoutSeed, bool rotate) external {
        calls[this.updateSeller.selector]++;
        uint256 s = sellerSeed % N_SELLERS;
        SellerModel storage m = sellerModels[s];
        if (!m.registered) return;
        uint64 rotation = rotate ? m.rotation + 1 : m.rotation;
        // forge-lint: disable-next-line(unsafe-typecast) < 4
        uint8 p = uint8(payoutSeed % payoutOptions.length);
        vm.prank(sellers[s]);
        market.updateSeller(_signerOf(s, rotation), payoutOptions[p], bytes32(s), "m2");
        m.rotation = rotation;
        m.payout = p;
    }

    // ======================================================================= channel actions

    struct OpenPlan {
        uint256 seller;
        uint256 buyer;
        uint256 deposit;
        uint256 voucherKey;
        bool shouldWork;
        bytes sig;
    }

    function open(
        uint256 sellerSeed,
        uint256 buyerSeed,
        uint256 deposit,
        uint256 sellerBurn,
        uint256 buyerBurn,
        uint256 trick
    ) external {
        calls[this.open.selector]++;
        // trick % 8: 0-4 honest (the seller is made ready first), 5 signed by a stale signer key,
        // 6 reuses a nonce, 7 whatever state the seller is in (maybe unregistered, inactive, broke)
        if (trick % 8 < 5) _makeReady(sellerSeed % N_SELLERS);
        (WayfareMarket.Offer memory o, OpenPlan memory p) =
            _planOpen(sellerSeed, buyerSeed, deposit, sellerBurn, buyerBurn, trick);
        vm.prank(buyers[p.buyer]);
        try market.open{value: uint256(o.buyerBurn) + p.deposit}(o, p.sig, vm.addr(p.voucherKey)) returns (bytes32 id) {
            successes[this.open.selector]++;
            _expect(p.shouldWork, "open succeeded against the rules");
            _recordOpen(id, o, p);
        } catch {
            _expect(!p.shouldWork, "a valid open reverted");
        }
    }

    function _planOpen(
        uint256 sellerSeed,
        uint256 buyerSeed,
        uint256 deposit,
        uint256 sellerBurn,
        uint256 buyerBurn,
        uint256 trick
    ) internal view returns (WayfareMarket.Offer memory o, OpenPlan memory p) {
        p.seller = sellerSeed % N_SELLERS;
        p.buyer = buyerSeed % N_BUYERS;
        o = _offer(p.seller, p.buyer, sellerBurn, buyerBurn, trick);
        // the fuzzer favours tiny numbers: keep honest deposits above the offer's minimum
        p.deposit = trick % 8 == 7 ? bound(deposit, 0, 5 ether) : bound(deposit, 0.01 ether, 5 ether);
        SellerModel storage m = sellerModels[p.seller];
        uint64 keyRotation = m.rotation;
        if (trick % 8 == 5 && m.rotation > 0) keyRotation = m.rotation - 1;
        if (trick % 8 == 6 && m.nextNonce > 0) o.nonce = m.nextNonce - 1;
        p.sig = signDigest(_signerKey(p.seller, keyRotation), market.hashOffer(o));
        p.voucherKey = _key(abi.encode("voucher", channels.length));
        p.shouldWork = m.registered && m.active && keyRotation == m.rotation && o.nonce == m.nextNonce
            && p.deposit >= o.minDeposit && m.funds >= o.sellerBurn;
    }

    /// @dev Registers, reactivates and funds seller `s` as needed for an honest open.
    function _makeReady(uint256 s) internal {
        SellerModel storage m = sellerModels[s];
        if (!m.registered) {
            vm.prank(sellers[s]);
            market.registerSeller{value: 1 ether}(_signerOf(s, 0), payoutOptions[s], bytes32(s), "m");
            m.registered = true;
            m.active = true;
            m.funds = 1 ether;
            // forge-lint: disable-next-line(unsafe-typecast) < 3
            m.payout = uint8(s);
            ghostSellerFunds += 1 ether;
        }
        if (!m.active) {
            vm.prank(sellers[s]);
            market.reactivateSeller();
            m.active = true;
        }
        if (m.funds < 0.2 ether) {
            vm.prank(sellers[s]);
            market.fundSeller{value: 1 ether}();
            m.funds += 1 ether;
            ghostSellerFunds += 1 ether;
        }
    }

    function _offer(uint256 s, uint256 b, uint256 sellerBurn, uint256 buyerBurn, uint256 trick)
        internal
        view
        returns (WayfareMarket.Offer memory)
    {
        return WayfareMarket.Offer({
            seller: sellers[s],
            buyer: buyers[b],
            // forge-lint: disable-next-line(unsafe-typecast) < 2
            service: 1 + uint8(trick % 2),
            pricePerMiB: 1e12,
            pricePerSecond: 1e10,
            sellerBurn: uint128(bound(sellerBurn, 0, 0.2 ether)),
            buyerBurn: uint128(bound(buyerBurn, 0, 0.2 ether)),
            minDeposit: 0.01 ether,
            paymentInterval: 15,
            nonce: sellerModels[s].nextNonce,
            expiry: uint64(block.timestamp + 1 hours)
        });
    }

    function _recordOpen(bytes32 id, WayfareMarket.Offer memory o, OpenPlan memory p) internal {
        SellerModel storage m = sellerModels[p.seller];
        m.nextNonce++;
        m.funds -= o.sellerBurn;
        ghostSellerFunds -= o.sellerBurn;
        ghostBurnsUnswept += uint256(o.sellerBurn) + o.buyerBurn;
        ghostBurnsTotal += uint256(o.sellerBurn) + o.buyerBurn;
        ghostOpenDeposits += p.deposit;
        ChannelModel storage c = channels.push();
        c.id = id;
        c.seller = uint8(p.seller);
        c.buyer = uint8(p.buyer);
        c.voucherKey = p.voucherKey;
        c.deposit = p.deposit;
        c.state = WayfareMarket.ChannelState.Open;
        c.sellerBurn = o.sellerBurn;
        c.buyerBurn = o.buyerBurn;
    }

    function topUp(uint256 chSeed, uint256 amount) external {
        calls[this.topUp.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pickLive(chSeed, false);
        amount = bound(amount, 1, 2 ether);
        vm.prank(buyers[c.buyer]);
        try market.topUp{value: amount}(c.id) {
            successes[this.topUp.selector]++;
            _expect(c.state == WayfareMarket.ChannelState.Open, "topUp outside Open");
            c.deposit += amount;
            ghostOpenDeposits += amount;
        } catch {
            _expect(c.state != WayfareMarket.ChannelState.Open, "topUp reverted on an Open channel");
        }
    }

    function settle(uint256 chSeed, uint256 amount, bool withVoucher, bool byAccount) external {
        calls[this.settle.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pickLive(chSeed, false);
        amount = bound(amount, 0, c.deposit + 1 ether);
        bytes memory sig = withVoucher ? signDigest(c.voucherKey, market.hashVoucher(c.id, amount)) : bytes("");
        uint256 s = c.seller;
        address caller = byAccount ? sellers[s] : _signerOf(s, sellerModels[s].rotation);
        bool live = c.state == WayfareMarket.ChannelState.Open || c.state == WayfareMarket.ChannelState.Closing;
        bool late = c.state == WayfareMarket.ChannelState.Closing && block.timestamp >= c.closesAt;
        bool shouldWork = live && !(withVoucher && late);
        uint256 best = c.best;
        if (withVoucher && amount > best) best = amount;
        vm.prank(caller);
        try market.settle(c.id, amount, sig) {
            successes[this.settle.selector]++;
            _expect(shouldWork, "settle succeeded against the rules");
            _closeModel(c, best);
        } catch {
            _expect(!shouldWork, "a valid settle reverted");
        }
    }

    function cooperativeClose(uint256 chSeed, uint256 amount, bool staleConsent) external {
        calls[this.cooperativeClose.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pickLive(chSeed, false);
        amount = bound(amount, 0, c.deposit + 1 ether);
        SellerModel storage m = sellerModels[c.seller];
        uint64 rotation = staleConsent && m.rotation > 0 ? m.rotation - 1 : m.rotation;
        bytes memory v = signDigest(c.voucherKey, market.hashVoucher(c.id, amount));
        bytes memory k = signDigest(_signerKey(c.seller, rotation), market.hashCloseConsent(c.id, amount));
        bool live = c.state == WayfareMarket.ChannelState.Open || c.state == WayfareMarket.ChannelState.Closing;
        bool shouldWork = live && rotation == m.rotation;
        try market.cooperativeClose(c.id, amount, v, k) {
            successes[this.cooperativeClose.selector]++;
            _expect(shouldWork, "cooperativeClose succeeded against the rules");
            _closeModel(c, amount);
        } catch {
            _expect(!shouldWork, "a valid cooperativeClose reverted");
        }
    }

    function startClose(uint256 chSeed) external {
        calls[this.startClose.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pickLive(chSeed, false);
        vm.prank(buyers[c.buyer]);
        try market.startClose(c.id) {
            successes[this.startClose.selector]++;
            _expect(c.state == WayfareMarket.ChannelState.Open, "startClose outside Open");
            c.state = WayfareMarket.ChannelState.Closing;
            c.closesAt = uint64(block.timestamp) + period;
        } catch {
            _expect(c.state != WayfareMarket.ChannelState.Open, "startClose reverted on an Open channel");
        }
    }

    function submitVoucher(uint256 chSeed, uint256 amount) external {
        calls[this.submitVoucher.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pickLive(chSeed, true);
        amount = bound(amount, 0, c.deposit + 1 ether);
        bytes memory sig = signDigest(c.voucherKey, market.hashVoucher(c.id, amount));
        bool shouldWork = c.state == WayfareMarket.ChannelState.Closing && block.timestamp < c.closesAt;
        try market.submitVoucher(c.id, amount, sig) {
            successes[this.submitVoucher.selector]++;
            _expect(shouldWork, "submitVoucher succeeded against the rules");
            if (amount > c.best) c.best = amount;
        } catch {
            _expect(!shouldWork, "a valid submitVoucher reverted");
        }
    }

    /// @param waitForDeadline jump to the deadline first (if the channel is Closing)
    function finalize(uint256 chSeed, bool waitForDeadline) external {
        calls[this.finalize.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pickLive(chSeed, true);
        if (waitForDeadline && c.state == WayfareMarket.ChannelState.Closing && block.timestamp < c.closesAt) {
            vm.warp(c.closesAt);
        }
        bool shouldWork = c.state == WayfareMarket.ChannelState.Closing && block.timestamp >= c.closesAt;
        try market.finalize(c.id) {
            successes[this.finalize.selector]++;
            _expect(shouldWork, "finalize succeeded against the rules");
            _closeModel(c, c.best);
        } catch {
            _expect(!shouldWork, "a valid finalize reverted");
        }
    }

    function rate(uint256 chSeed, uint8 score, uint8 who) external {
        calls[this.rate.selector]++;
        if (channels.length == 0) return;
        ChannelModel storage c = _pick(chSeed);
        score = uint8(bound(score, 1, 5));
        who = who % 3; // 0 buyer, 1 seller, 2 an outsider
        address caller = who == 0 ? buyers[c.buyer] : who == 1 ? sellers[c.seller] : sink;
        bool already = who == 0 ? c.buyerRated : c.sellerRated;
        bool shouldWork = c.state == WayfareMarket.ChannelState.Closed && who != 2 && !already;
        vm.prank(caller);
        try market.rate(c.id, score) {
            successes[this.rate.selector]++;
            _expect(shouldWork, "rate succeeded against the rules");
            if (who == 0) c.buyerRated = true;
            else c.sellerRated = true;
        } catch {
            _expect(!shouldWork, "a valid rate reverted");
        }
    }

    // ======================================================================= money out

    function withdraw(uint256 accountSeed) external {
        calls[this.withdraw.selector]++;
        address account = _creditHolder(accountSeed);
        uint256 owed = modelCredit[account];
        uint256 before = account.balance;
        bool shouldWork = owed != 0 && account != address(reverting);
        vm.prank(account);
        try market.withdraw() {
            successes[this.withdraw.selector]++;
            _expect(shouldWork, "withdraw succeeded against the rules");
            _expect(account.balance == before + owed, "withdraw paid a wrong amount");
            modelCredit[account] = 0;
            ghostWithdrawable -= owed;
            ghostWithdrawn += owed;
        } catch {
            _expect(!shouldWork, "a valid withdraw reverted");
        }
    }

    function sweepBurns() external {
        calls[this.sweepBurns.selector]++;
        uint256 amount = ghostBurnsUnswept;
        uint256 before = sink.balance;
        try market.sweepBurns() {
            successes[this.sweepBurns.selector]++;
            _expect(amount != 0, "sweepBurns succeeded with nothing to sweep");
            _expect(sink.balance == before + amount, "the sink didn't get the burns");
            ghostBurnsUnswept = 0;
            ghostSwept += amount;
        } catch {
            _expect(amount == 0, "sweepBurns reverted");
        }
    }

    function warp(uint256 secondsAhead) external {
        calls[this.warp.selector]++;
        vm.warp(block.timestamp + bound(secondsAhead, 1, 2 * uint256(period)));
    }

    // ======================================================================= views for the test

    function channelCount() external view returns (uint256) {
        return channels.length;
    }

    function channelAt(uint256 i) external view returns (ChannelModel memory) {
        return channels[i];
    }

    function sellerModel(uint256 i) external view returns (SellerModel memory) {
        return sellerModels[i];
    }

    /// @dev Everyone who can ever hold ETH in this game, except the market and the sink.
    function cast() public view returns (address[] memory all) {
        address[] memory holders = creditHolders(); // buyers and payouts, deduplicated
        all = new address[](N_SELLERS + holders.length + 3);
        uint256 n;
        for (uint256 i; i < N_SELLERS; i++) {
            all[n++] = sellers[i];
        }
        for (uint256 i; i < holders.length; i++) {
            all[n++] = holders[i];
        }
        // signers (current keys only matter for ETH: they never receive any)
        all[n++] = _signerOf(0, sellerModels[0].rotation);
        all[n++] = _signerOf(1, sellerModels[1].rotation);
        all[n++] = _signerOf(2, sellerModels[2].rotation);
    }

    /// @dev Accounts that can be credited: buyers and payouts (deduplicated: the re-entrant
    ///      contract is both a buyer and a payout option).
    function creditHolders() public view returns (address[] memory all) {
        all = new address[](N_BUYERS + payoutOptions.length - 1);
        uint256 n;
        for (uint256 i; i < N_BUYERS; i++) {
            all[n++] = buyers[i];
        }
        for (uint256 i; i < payoutOptions.length; i++) {
            if (payoutOptions[i] != address(reentrant)) all[n++] = payoutOptions[i];
        }
    }

    // ======================================================================= internals

    function _closeModel(ChannelModel storage c, uint256 best) internal {
        uint256 toSeller = best < c.deposit ? best : c.deposit;
        uint256 toBuyer = c.deposit - toSeller;
        c.state = WayfareMarket.ChannelState.Closed;
        ghostOpenDeposits -= c.deposit;
        ghostWithdrawable += c.deposit;
        modelCredit[payoutOptions[sellerModels[c.seller].payout]] += toSeller;
        modelCredit[buyers[c.buyer]] += toBuyer;
    }

    /// @dev The fuzzer favours small seeds: map them to the newest channels, which are the
    ///      ones most likely still Open or Closing.
    function _pick(uint256 chSeed) internal view returns (ChannelModel storage) {
        return channels[channels.length - 1 - chSeed % channels.length];
    }

    /// @dev Three times in four, the first channel from the seeded pick on that is Closing
    ///      (`closingOnly`) or Open/Closing; else (or if none is) the seeded pick itself, so
    ///      calls on channels in the wrong state keep being tried too.
    function _pickLive(uint256 chSeed, bool closingOnly) internal view returns (ChannelModel storage) {
        uint256 n = channels.length;
        uint256 start = n - 1 - chSeed % n;
        if ((chSeed >> 128) % 4 != 0) {
            for (uint256 k; k < n; k++) {
                ChannelModel storage c = channels[(start + k) % n];
                if (c.state == WayfareMarket.ChannelState.Closing) return c;
                if (!closingOnly && c.state == WayfareMarket.ChannelState.Open) return c;
            }
        }
        return channels[start];
    }

    function _creditHolder(uint256 seed) internal view returns (address) {
        address[] memory all = creditHolders();
        return all[seed % all.length];
    }

    function _signerKey(uint256 s, uint64 rotation) internal pure returns (uint256) {
        return _key(abi.encode("signer", s, rotation));
    }

    /// @dev A valid secp256k1 private key derived from `seed`.
    function _key(bytes memory seed) internal pure returns (uint256) {
        return uint256(keccak256(seed)) % (SECP256K1_N - 1) + 1;
    }

    function _signerOf(uint256 s, uint64 rotation) internal pure returns (address) {
        return vm.addr(_signerKey(s, rotation));
    }

    function _dealTo(address account, uint256 amount) internal {
        vm.deal(account, account.balance + amount);
        ghostDealt += amount;
    }

    function _expect(bool ok, string memory what) internal {
        if (!ok) {
            violations++;
            lastViolation = what;
        }
    }
}
