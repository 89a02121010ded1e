// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title WayfareMarket
/// @notice Seller registry, buyer->seller payment channels, burns and ratings of the Wayfare
///         decentralized VPN. Native currency only. Payments out of the contract are pull-only
///         (`withdraw`), so no receiver can block a close.
/// @dev Interface fixed by `design/contracts.md`. Signatures are EIP-712 (domain "Wayfare", "1"):
///      `Offer` signed by the seller's current signer, `Voucher` by the channel's voucher signer,
///      `CloseConsent` by the seller's current signer. High-s, bad-v, wrong-length and
///      zero-recovering signatures are rejected (OpenZeppelin ECDSA).
///
///      Storage is packed for gas: a channel takes three slots at `open` and a fourth one only
///      once a close is disputed (`startClose`). Amounts are stored as uint96 (deposits, best
///      voucher: up to ~7.9e28 wei) or uint88 (burns, seller funds: up to ~3.09e26 wei); larger
///      values revert with `AmountTooLarge` instead of truncating.
contract WayfareMarket is EIP712, ReentrancyGuardTransient {
    // ---------------------------------------------------------------------------------------
    // Types
    // ---------------------------------------------------------------------------------------

    /// @notice A seller's signed terms for one channel with one buyer (EIP-712 type `Offer`).
    struct Offer {
        address seller; // seller's registered account
        address buyer; // the only account that may open with this offer
        uint8 service; // 1 = WireGuard, 2 = shadowsocks
        uint128 pricePerMiB; // wei per MiB (2^20 bytes) carried, both directions
        uint128 pricePerSecond; // wei per second of session
        uint128 sellerBurn; // burnt from the seller's funds at open
        uint128 buyerBurn; // burnt from the buyer's payment at open
        uint128 minDeposit; // least deposit the seller accepts
        uint32 paymentInterval; // seconds between vouchers
        uint64 nonce; // an offer opens at most one channel
        uint64 expiry; // unix seconds; usable while block.timestamp <= expiry
    }

    /// @notice Channel life cycle. `None` = the id was never opened; ids never reopen.
    enum ChannelState {
        None,
        Open,
        Closing,
        Closed
    }

    /// @notice What `channel(id)` returns.
    /// @param seller         the seller's account
    /// @param buyer          the buyer's account (opened the channel, may top up and start a close)
    /// @param voucherSigner  the key that signs this channel's vouchers
    /// @param deposit        the buyer's deposit (kept after the close as a record; see ChannelClosed for the split)
    /// @param best           highest voucher amount recorded by `submitVoucher` while Closing (0 if never disputed);
    ///                       saturates at 2^96-1, which is above any deposit
    /// @param sellerBurn     what the seller burnt at open (weight of the seller's rating)
    /// @param buyerBurn      what the buyer burnt at open (weight of the buyer's rating)
    /// @param closesAt       end of the challenge period once `startClose` ran, else 0
    /// @param state          None, Open, Closing or Closed
    /// @param sellerRated    the seller side has rated this channel
    /// @param buyerRated     the buyer side has rated this channel
    struct ChannelInfo {
        address seller;
        address buyer;
        address voucherSigner;
        uint256 deposit;
        uint256 best;
        uint128 sellerBurn;
        uint128 buyerBurn;
        uint64 closesAt;
        ChannelState state;
        bool sellerRated;
        bool buyerRated;
    }

    /// @notice What `seller(account)` returns.
    /// @param signer         hot key: signs offers and close consents, may call `settle` and `rate`
    /// @param payout         where channel earnings are credited (withdrawn by `payout` itself)
    /// @param encryptionKey  the seller's X25519 public key
    /// @param funds          balance that pays future seller burns
    /// @param registered     the account has registered (a registration is never removed)
    /// @param active         new channels may be opened against this seller
    /// @param metadata       free-form seller metadata (at most MAX_METADATA bytes)
    struct SellerInfo {
        address signer;
        address payout;
        bytes32 encryptionKey;
        uint256 funds;
        bool registered;
        bool active;
        string metadata;
    }

    /// @dev Storage form of a channel. Slots 0-2 are written by `open`, slot 3 by `startClose`
    ///      and `submitVoucher` only.
    struct Channel {
        // slot 0
        address seller;
        uint88 sellerBurn;
        ChannelState state;
        // slot 1
        address buyer;
        uint96 deposit;
        // slot 2
        address voucherSigner;
        uint88 buyerBurn;
        uint8 rated; // bit 0: seller side rated, bit 1: buyer side rated
        // slot 3
        uint96 best;
        uint64 closesAt;
    }

    /// @dev Storage form of a seller. Registered <=> signer != 0.
    struct Seller {
        // slot 0 (everything `open` needs)
        address signer;
        uint88 funds;
        bool active;
        // slot 1
        address payout;
        // slot 2
        bytes32 encryptionKey;
        // slot 3
        string metadata;
    }

    // ---------------------------------------------------------------------------------------
    // Constants, immutables, storage
    // ---------------------------------------------------------------------------------------

    bytes32 public constant OFFER_TYPEHASH = keccak256(
        "Offer(address seller,address buyer,uint8 service,uint128 pricePerMiB,uint128 pricePerSecond,"
        "uint128 sellerBurn,uint128 buyerBurn,uint128 minDeposit,uint32 paymentInterval,uint64 nonce,uint64 expiry)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 amount)");
    bytes32 public constant CLOSE_CONSENT_TYPEHASH = keccak256("CloseConsent(bytes32 channelId,uint256 amount)");

    /// @notice Shortest challenge period the constructor accepts, in seconds.
    uint64 public constant MIN_CHALLENGE_PERIOD = 60;
    /// @notice Longest challenge period the constructor accepts, in seconds (365 days).
    uint64 public constant MAX_CHALLENGE_PERIOD = 365 days;
    /// @notice Longest seller metadata string, in bytes.
    uint256 public constant MAX_METADATA = 1024;
    uint8 public constant SERVICE_WIREGUARD = 1;
    uint8 public constant SERVICE_SHADOWSOCKS = 2;

    uint8 private constant RATED_SELLER = 1;
    uint8 private constant RATED_BUYER = 2;

    address private immutable _burnSink;
    uint64 private immutable _challengePeriod;

    mapping(address account => Seller) private _sellers;
    mapping(bytes32 id => Channel) private _channels;
    mapping(address account => uint256) private _withdrawable;
    /// @dev A seller's past signers: rotating away voids their offers and consents for good.
    mapping(address account => mapping(address signer => bool)) private _retiredSigners;
    /// @dev Unswept burns plus one: the slot never returns to zero, so the next `open` after a
    ///      sweep doesn't pay for a fresh slot.
    uint256 private _burnsPlusOne = 1;

    // ---------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------

    event SellerRegistered(
        address indexed seller, address signer, address payout, bytes32 encryptionKey, string metadata
    );
    event SellerUpdated(address indexed seller, address signer, address payout, bytes32 encryptionKey, string metadata);
    /// @param funds the seller's funds after the deposit
    event SellerFunded(address indexed seller, uint256 amount, uint256 funds);
    /// @param funds the seller's funds after the withdrawal
    event SellerWithdrew(address indexed seller, uint256 amount, uint256 funds);
    event SellerDeactivated(address indexed seller);
    event SellerReactivated(address indexed seller);
    event ChannelOpened(
        bytes32 indexed id,
        address indexed seller,
        address indexed buyer,
        uint8 service,
        uint128 pricePerMiB,
        uint128 pricePerSecond,
        uint128 sellerBurn,
        uint128 buyerBurn,
        uint256 deposit,
        uint32 paymentInterval
    );
    /// @param deposit the channel's deposit after the top-up
    event ToppedUp(bytes32 indexed id, uint256 amount, uint256 deposit);
    event CloseStarted(bytes32 indexed id, uint64 closesAt);
    /// @param best the channel's best voucher amount after this submission
    event VoucherSubmitted(bytes32 indexed id, uint256 best);
    event ChannelClosed(bytes32 indexed id, uint256 toSeller, uint256 toBuyer);
    /// @param rater the rating side's account, @param ratee the other side's account,
    /// @param weight the rater's burn in this channel
    event Rated(bytes32 indexed id, address indexed rater, address indexed ratee, uint8 score, uint256 weight);
    event Withdrawn(address indexed account, uint256 amount);
    event BurnsSwept(address indexed sink, uint256 amount);

    // ---------------------------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------------------------

    /// Constructor: the challenge period is below MIN_CHALLENGE_PERIOD (60 s).
    error ChallengePeriodTooShort(uint64 challengePeriod);
    /// Constructor: the challenge period is above MAX_CHALLENGE_PERIOD (365 days).
    error ChallengePeriodTooLong(uint64 challengePeriod);
    /// Constructor: the burn sink can't be the market itself (burns would be stuck).
    error BurnSinkIsMarket();
    /// registerSeller: this account is already registered.
    error AlreadyRegistered(address seller);
    /// The account isn't a registered seller.
    error SellerNotRegistered(address seller);
    /// open / deactivateSeller: the seller is deactivated.
    error SellerInactive(address seller);
    /// reactivateSeller: the seller is already active.
    error SellerActive(address seller);
    /// registerSeller / updateSeller: the signer is the zero address.
    error ZeroSigner();
    /// registerSeller / updateSeller: the payout is the zero address.
    error ZeroPayout();
    /// updateSeller: this signer was rotated out before and can't come back.
    error SignerRetired(address signer);
    /// registerSeller / updateSeller: metadata longer than MAX_METADATA bytes.
    error MetadataTooLong(uint256 length, uint256 max);
    /// fundSeller / withdrawSellerFunds / topUp: a zero amount.
    error ZeroAmount();
    /// An amount doesn't fit its storage type (see the contract NatSpec).
    error AmountTooLarge(uint256 amount, uint256 max);
    /// open: the seller's funds can't pay the offer's seller burn.
    error InsufficientSellerFunds(uint256 funds, uint256 sellerBurn);
    /// withdrawSellerFunds: more than the seller's funds.
    error WithdrawalExceedsFunds(uint256 funds, uint256 amount);
    /// The caller isn't the channel's (or offer's) buyer.
    error NotBuyer(address caller, address buyer);
    /// The caller is neither the seller's account nor its current signer.
    error NotSeller(address caller, address seller);
    /// rate: the caller is neither side of the channel.
    error NotParty(address caller);
    /// open: block.timestamp > offer.expiry.
    error OfferExpired(uint64 expiry, uint256 nowTs);
    /// open: service isn't 1 (WireGuard) or 2 (shadowsocks).
    error BadService(uint8 service);
    /// open: paymentInterval is 0.
    error ZeroInterval();
    /// open: voucherSigner is the zero address.
    error ZeroVoucherSigner();
    /// open: the buyer is the seller itself.
    error BuyerIsSeller(address account);
    /// open: this offer (seller, nonce) already opened the channel `id`.
    error OfferUsed(bytes32 id);
    /// open: msg.value < buyerBurn + minDeposit.
    error DepositTooLow(uint256 sent, uint256 required);
    /// A signature isn't 65 bytes, has a high s, a bad v, or recovers to nothing.
    error BadSignature();
    /// A well-formed signature by the wrong key (wrong signer, or a different message).
    error WrongSigner(address recovered, address expected);
    /// The channel isn't in a state that allows this call (0 None, 1 Open, 2 Closing, 3 Closed).
    error WrongState(bytes32 id, ChannelState state);
    /// submitVoucher / settle with a voucher: block.timestamp >= closesAt.
    error DeadlinePassed(uint64 closesAt);
    /// finalize: block.timestamp < closesAt.
    error DeadlineNotReached(uint64 closesAt);
    /// rate: this side already rated this channel.
    error AlreadyRated(bytes32 id, address rater);
    /// rate: score outside 1..5.
    error BadScore(uint8 score);
    /// withdraw: nothing credited to the caller.
    error NothingToWithdraw();
    /// sweepBurns: no unswept burns.
    error NothingToSweep();
    /// withdraw / withdrawSellerFunds / sweepBurns: the receiver rejected the payment (nothing changed).
    error TransferFailed(address to, uint256 amount);

    // ---------------------------------------------------------------------------------------
    // Constructor
    // ---------------------------------------------------------------------------------------

    /// @param burnSink where `sweepBurns` sends the burns (fixed for good)
    /// @param challengePeriod seconds between `startClose` and `finalize`; 60 s to 365 days
    constructor(address burnSink, uint64 challengePeriod) EIP712("Wayfare", "1") {
        if (challengePeriod < MIN_CHALLENGE_PERIOD) revert ChallengePeriodTooShort(challengePeriod);
        if (challengePeriod > MAX_CHALLENGE_PERIOD) revert ChallengePeriodTooLong(challengePeriod);
        if (burnSink == address(this)) revert BurnSinkIsMarket();
        _burnSink = burnSink;
        _challengePeriod = challengePeriod;
    }

    // ---------------------------------------------------------------------------------------
    // Seller registry
    // ---------------------------------------------------------------------------------------

    /// @notice Registers msg.sender as a seller (once); msg.value goes to its funds.
    function registerSeller(address signer, address payout, bytes32 encryptionKey, string calldata metadata)
        external
        payable
    {
        Seller storage s = _sellers[msg.sender];
        if (s.signer != address(0)) revert AlreadyRegistered(msg.sender);
        _checkSellerFields(signer, payout, metadata);
        uint88 funds = _toUint88(msg.value);
        s.signer = signer;
        s.funds = funds;
        s.active = true;
        s.payout = payout;
        s.encryptionKey = encryptionKey;
        s.metadata = metadata;
        emit SellerRegistered(msg.sender, signer, payout, encryptionKey, metadata);
        if (msg.value != 0) emit SellerFunded(msg.sender, msg.value, funds);
    }

    /// @notice Updates the caller's seller record. A new signer voids every unused offer and
    ///         close consent signed by the old one, for good (the old signer can't come back).
    function updateSeller(address signer, address payout, bytes32 encryptionKey, string calldata metadata) external {
        Seller storage s = _registered(msg.sender);
        _checkSellerFields(signer, payout, metadata);
        address old = s.signer;
        if (signer != old) {
            if (_retiredSigners[msg.sender][signer]) revert SignerRetired(signer);
            _retiredSigners[msg.sender][old] = true;
            s.signer = signer;
        }
        s.payout = payout;
        s.encryptionKey = encryptionKey;
        s.metadata = metadata;
        emit SellerUpdated(msg.sender, signer, payout, encryptionKey, metadata);
    }

    /// @notice Adds msg.value to the caller's seller funds (they pay future seller burns only).
    function fundSeller() external payable {
        Seller storage s = _registered(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        uint88 funds = _toUint88(uint256(s.funds) + msg.value);
        s.funds = funds;
        emit SellerFunded(msg.sender, msg.value, funds);
    }

    /// @notice Sends `amount` of the caller's seller funds back to the caller.
    function withdrawSellerFunds(uint256 amount) external nonReentrant {
        Seller storage s = _registered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 funds = s.funds;
        if (amount > funds) revert WithdrawalExceedsFunds(funds, amount);
        unchecked {
            funds -= amount;
        }
        s.funds = _toUint88(funds);
        emit SellerWithdrew(msg.sender, amount, funds);
        _send(msg.sender, amount);
    }

    /// @notice No new channels against the caller; open ones run on.
    function deactivateSeller() external {
        Seller storage s = _registered(msg.sender);
        if (!s.active) revert SellerInactive(msg.sender);
        s.active = false;
        emit SellerDeactivated(msg.sender);
    }

    /// @notice Undoes `deactivateSeller`.
    function reactivateSeller() external {
        Seller storage s = _registered(msg.sender);
        if (s.active) revert SellerActive(msg.sender);
        s.active = true;
        emit SellerReactivated(msg.sender);
    }

    // ---------------------------------------------------------------------------------------
    // Channels
    // ---------------------------------------------------------------------------------------

    /// @notice Opens the channel of `offer` (caller must be offer.buyer). msg.value pays the
    ///         buyer burn; the rest is the deposit. The seller burn comes from the seller's funds.
    ///         Both burns are final at once.
    /// @return id keccak256(abi.encode(block.chainid, address(this), offer.seller, offer.nonce))
    function open(Offer calldata offer, bytes calldata sellerSig, address voucherSigner)
        external
        payable
        returns (bytes32 id)
    {
        if (msg.sender != offer.buyer) revert NotBuyer(msg.sender, offer.buyer);
        if (block.timestamp > offer.expiry) revert OfferExpired(offer.expiry, block.timestamp);
        if (offer.service != SERVICE_WIREGUARD && offer.service != SERVICE_SHADOWSOCKS) {
            revert BadService(offer.service);
        }
        if (offer.paymentInterval == 0) revert ZeroInterval();
        if (voucherSigner == address(0)) revert ZeroVoucherSigner();
        address sellerAccount = offer.seller;
        if (sellerAccount == msg.sender) revert BuyerIsSeller(msg.sender);

        Seller storage s = _sellers[sellerAccount];
        address signer = s.signer;
        uint256 funds = s.funds;
        if (signer == address(0)) revert SellerNotRegistered(sellerAccount);
        if (!s.active) revert SellerInactive(sellerAccount);

        id = channelId(sellerAccount, offer.nonce);
        Channel storage c = _channels[id];
        if (c.state != ChannelState.None) revert OfferUsed(id);

        _checkSig(_hashTypedDataV4(keccak256(abi.encode(OFFER_TYPEHASH, offer))), sellerSig, signer);

        uint256 buyerBurn = offer.buyerBurn;
        uint256 required = buyerBurn + offer.minDeposit;
        if (msg.value < required) revert DepositTooLow(msg.value, required);
        uint256 sellerBurn = offer.sellerBurn;
        if (sellerBurn > funds) revert InsufficientSellerFunds(funds, sellerBurn);
        uint256 deposit = msg.value - buyerBurn;

        unchecked {
            // sellerBurn <= funds
            s.funds = _toUint88(funds - sellerBurn);
            // both < 2^128
            uint256 burnt = sellerBurn + buyerBurn;
            if (burnt != 0) _burnsPlusOne += burnt;
        }
        c.seller = sellerAccount;
        c.sellerBurn = _toUint88(sellerBurn);
        c.state = ChannelState.Open;
        c.buyer = msg.sender;
        c.deposit = _toUint96(deposit);
        c.voucherSigner = voucherSigner;
        c.buyerBurn = _toUint88(buyerBurn);

        _emitOpened(id, offer, deposit);
    }

    /// @notice Adds msg.value to an Open channel's deposit (buyer only).
    function topUp(bytes32 id) external payable {
        Channel storage c = _channels[id];
        _requireState(id, c.state, ChannelState.Open);
        address buyer = c.buyer;
        if (msg.sender != buyer) revert NotBuyer(msg.sender, buyer);
        if (msg.value == 0) revert ZeroAmount();
        uint256 deposit = uint256(c.deposit) + msg.value;
        c.deposit = _toUint96(deposit);
        emit ToppedUp(id, msg.value, deposit);
    }

    /// @notice The seller (account or signer) closes at once on max(best stored, `amount`), paid
    ///         up to the deposit. An empty `voucherSig` settles on the best voucher already stored
    ///         (`amount` is then ignored). While Closing, a new voucher is only accepted before
    ///         the deadline.
    function settle(bytes32 id, uint256 amount, bytes calldata voucherSig) external {
        Channel storage c = _channels[id];
        ChannelState state = c.state;
        if (state != ChannelState.Open && state != ChannelState.Closing) revert WrongState(id, state);
        address sellerAccount = c.seller;
        if (msg.sender != sellerAccount && msg.sender != _sellers[sellerAccount].signer) {
            revert NotSeller(msg.sender, sellerAccount);
        }
        uint256 best;
        if (state == ChannelState.Closing) {
            best = c.best;
            if (voucherSig.length != 0) {
                uint64 closesAt = c.closesAt;
                if (block.timestamp >= closesAt) revert DeadlinePassed(closesAt);
            }
        }
        if (voucherSig.length != 0) {
            _checkSig(hashVoucher(id, amount), voucherSig, c.voucherSigner);
            if (amount > best) best = amount;
        }
        _close(id, c, sellerAccount, best);
    }

    /// @notice Anyone closes at once on `amount`, given the buyer's voucher and the seller's
    ///         consent (signed by its current signer) for that same amount. Open or Closing.
    function cooperativeClose(bytes32 id, uint256 amount, bytes calldata voucherSig, bytes calldata consentSig)
        external
    {
        Channel storage c = _channels[id];
        ChannelState state = c.state;
        if (state != ChannelState.Open && state != ChannelState.Closing) revert WrongState(id, state);
        address sellerAccount = c.seller;
        _checkSig(hashVoucher(id, amount), voucherSig, c.voucherSigner);
        _checkSig(hashCloseConsent(id, amount), consentSig, _sellers[sellerAccount].signer);
        _close(id, c, sellerAccount, amount);
    }

    /// @notice The buyer starts a unilateral close: Open -> Closing, closesAt = now + challengePeriod
    ///         (set once, never extended).
    function startClose(bytes32 id) external {
        Channel storage c = _channels[id];
        _requireState(id, c.state, ChannelState.Open);
        address buyer = c.buyer;
        if (msg.sender != buyer) revert NotBuyer(msg.sender, buyer);
        uint64 closesAt = uint64(block.timestamp) + _challengePeriod;
        c.state = ChannelState.Closing;
        c.closesAt = closesAt;
        emit CloseStarted(id, closesAt);
    }

    /// @notice Anyone (seller, watchtower) records a voucher while Closing and before closesAt;
    ///         best = max(best, amount).
    function submitVoucher(bytes32 id, uint256 amount, bytes calldata voucherSig) external {
        Channel storage c = _channels[id];
        _requireState(id, c.state, ChannelState.Closing);
        uint64 closesAt = c.closesAt;
        if (block.timestamp >= closesAt) revert DeadlinePassed(closesAt);
        _checkSig(hashVoucher(id, amount), voucherSig, c.voucherSigner);
        uint256 best = c.best;
        if (amount > best) {
            // saturate: every deposit is below 2^96, so payouts don't change
            best = amount > type(uint96).max ? type(uint96).max : amount;
            c.best = _toUint96(best);
        }
        emit VoucherSubmitted(id, best);
    }

    /// @notice Anyone closes a Closing channel on its best voucher once closesAt is reached.
    function finalize(bytes32 id) external {
        Channel storage c = _channels[id];
        _requireState(id, c.state, ChannelState.Closing);
        uint64 closesAt = c.closesAt;
        if (block.timestamp < closesAt) revert DeadlineNotReached(closesAt);
        _close(id, c, c.seller, c.best);
    }

    /// @notice Pays out everything closes credited to the caller.
    function withdraw() external nonReentrant {
        uint256 amount = _withdrawable[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _withdrawable[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        _send(msg.sender, amount);
    }

    /// @notice Rates the other side of a Closed channel, once per side. The buyer side is the
    ///         buyer account or the channel's voucher signer; the seller side is the seller
    ///         account or its current signer. weight = the rater side's burn in this channel.
    function rate(bytes32 id, uint8 score) external {
        Channel storage c = _channels[id];
        _requireState(id, c.state, ChannelState.Closed);
        if (score == 0 || score > 5) revert BadScore(score);
        address sellerAccount = c.seller;
        address buyer = c.buyer;
        address voucherSigner = c.voucherSigner;
        uint8 rated = c.rated;
        bool buyerSide;
        if (msg.sender == buyer) {
            buyerSide = true;
        } else if (msg.sender == sellerAccount) {
            buyerSide = false;
        } else if (msg.sender == voucherSigner) {
            buyerSide = true;
        } else if (msg.sender == _sellers[sellerAccount].signer) {
            buyerSide = false;
        } else {
            revert NotParty(msg.sender);
        }
        uint8 bit = buyerSide ? RATED_BUYER : RATED_SELLER;
        if (rated & bit != 0) revert AlreadyRated(id, msg.sender);
        c.rated = rated | bit;
        if (buyerSide) emit Rated(id, buyer, sellerAccount, score, c.buyerBurn);
        else emit Rated(id, sellerAccount, buyer, score, c.sellerBurn);
    }

    /// @notice Sends every unswept burn to the burn sink. Reverts (keeping the burns) if the
    ///         sink rejects the payment.
    function sweepBurns() external nonReentrant {
        uint256 amount = _burnsPlusOne - 1;
        if (amount == 0) revert NothingToSweep();
        _burnsPlusOne = 1;
        emit BurnsSwept(_burnSink, amount);
        _send(_burnSink, amount);
    }

    // ---------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------

    function seller(address account) external view returns (SellerInfo memory info) {
        Seller storage s = _sellers[account];
        info.signer = s.signer;
        info.payout = s.payout;
        info.encryptionKey = s.encryptionKey;
        info.funds = s.funds;
        info.registered = s.signer != address(0);
        info.active = s.active;
        info.metadata = s.metadata;
    }

    function channel(bytes32 id) external view returns (ChannelInfo memory info) {
        Channel storage c = _channels[id];
        info.seller = c.seller;
        info.buyer = c.buyer;
        info.voucherSigner = c.voucherSigner;
        info.deposit = c.deposit;
        info.best = c.best;
        info.sellerBurn = c.sellerBurn;
        info.buyerBurn = c.buyerBurn;
        info.closesAt = c.closesAt;
        info.state = c.state;
        info.sellerRated = c.rated & RATED_SELLER != 0;
        info.buyerRated = c.rated & RATED_BUYER != 0;
    }

    /// @notice The id of the channel `seller`'s offer with `nonce` opens (or opened) here.
    function channelId(address seller, uint64 nonce) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), seller, nonce));
    }

    /// @notice The EIP-712 digest the seller's signer signs for `offer`.
    function hashOffer(Offer calldata offer) external view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(OFFER_TYPEHASH, offer)));
    }

    /// @notice The EIP-712 digest the voucher signer signs for a cumulative `amount`.
    function hashVoucher(bytes32 id, uint256 amount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, id, amount)));
    }

    /// @notice The EIP-712 digest the seller's signer signs to consent to closing at `amount`.
    function hashCloseConsent(bytes32 id, uint256 amount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(CLOSE_CONSENT_TYPEHASH, id, amount)));
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice What `withdraw()` would pay `account` now.
    function withdrawable(address account) external view returns (uint256) {
        return _withdrawable[account];
    }

    /// @notice Burns waiting for `sweepBurns`.
    function burnedUnswept() external view returns (uint256) {
        return _burnsPlusOne - 1;
    }

    function burnSink() external view returns (address) {
        return _burnSink;
    }

    function challengePeriod() external view returns (uint64) {
        return _challengePeriod;
    }

    // ---------------------------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------------------------

    /// @dev Separate frame: the event's ten fields don't fit `open`'s stack.
    function _emitOpened(bytes32 id, Offer calldata offer, uint256 deposit) private {
        emit ChannelOpened(
            id,
            offer.seller,
            offer.buyer,
            offer.service,
            offer.pricePerMiB,
            offer.pricePerSecond,
            offer.sellerBurn,
            offer.buyerBurn,
            deposit,
            offer.paymentInterval
        );
    }

    /// @dev Closed before anything else; credits are pull payments.
    function _close(bytes32 id, Channel storage c, address sellerAccount, uint256 best) private {
        c.state = ChannelState.Closed;
        address buyer = c.buyer;
        uint256 deposit = c.deposit;
        uint256 toSeller = best < deposit ? best : deposit;
        uint256 toBuyer;
        unchecked {
            toBuyer = deposit - toSeller;
        }
        if (toSeller != 0) _withdrawable[_sellers[sellerAccount].payout] += toSeller;
        if (toBuyer != 0) _withdrawable[buyer] += toBuyer;
        emit ChannelClosed(id, toSeller, toBuyer);
    }

    function _checkSig(bytes32 digest, bytes calldata sig, address expected) private pure {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, sig);
        if (err != ECDSA.RecoverError.NoError) revert BadSignature();
        if (recovered != expected) revert WrongSigner(recovered, expected);
    }

    function _requireState(bytes32 id, ChannelState actual, ChannelState wanted) private pure {
        if (actual != wanted) revert WrongState(id, actual);
    }

    function _registered(address account) private view returns (Seller storage s) {
        s = _sellers[account];
        if (s.signer == address(0)) revert SellerNotRegistered(account);
    }

    function _checkSellerFields(address signer, address payout, string calldata metadata) private pure {
        if (signer == address(0)) revert ZeroSigner();
        if (payout == address(0)) revert ZeroPayout();
        if (bytes(metadata).length > MAX_METADATA) revert MetadataTooLong(bytes(metadata).length, MAX_METADATA);
    }

    function _toUint88(uint256 amount) private pure returns (uint88) {
        if (amount > type(uint88).max) revert AmountTooLarge(amount, type(uint88).max);
        // forge-lint: disable-next-line(unsafe-typecast) checked on the line above
        return uint88(amount);
    }

    function _toUint96(uint256 amount) private pure returns (uint96) {
        if (amount > type(uint96).max) revert AmountTooLarge(amount, type(uint96).max);
        // forge-lint: disable-next-line(unsafe-typecast) checked on the line above
        return uint96(amount);
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
