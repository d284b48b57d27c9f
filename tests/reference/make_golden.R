# Golden values for the statistics tests (mibgkit.stats), computed with R.
#
# Run from the repository root:
#     Rscript tests/reference/make_golden.R
# Needs R >= 4.2 with survival, pROC, maxstat and jsonlite
# (Debian: r-base-core r-cran-survival r-cran-proc r-cran-maxstat r-cran-jsonlite).
# Reads the CSV data sets beside this script (written by make_data.py; rossi.csv is
# lifelines' copy of the Rossi et al. 1980 recidivism data) and writes golden.json.

suppressPackageStartupMessages({
  library(survival)
  library(pROC)
  library(maxstat)
  library(jsonlite)
})

here <- "tests/reference"
rd <- function(name) read.csv(file.path(here, name), stringsAsFactors = FALSE)
rossi <- rd("rossi.csv")
cohort <- rd("cohort60.csv")
stepdat <- rd("stepwise.csv")
z <- qnorm(0.975)

# --------------------------------------------------------------------------- univariate Cox
cox_uni <- function(d, time, event, cov, ties) {
  f <- coxph(as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, cov)), data = d,
             ties = ties, control = coxph.control(eps = 1e-10, iter.max = 100))
  b <- unname(coef(f)); se <- unname(sqrt(diag(vcov(f))))
  s <- summary(f)
  list(covariate = cov, ties = ties, beta = b, se = se, hr = exp(b),
       ci_lower = exp(b - z * se), ci_upper = exp(b + z * se),
       p = unname(s$coefficients[1, "Pr(>|z|)"]),
       lr_p = unname(s$logtest["pvalue"]), score_p = unname(s$sctest["pvalue"]),
       concordance = unname(f$concordance["concordance"]),
       loglik = f$loglik[2], n = f$n, events = f$nevent)
}
univariate <- list()
for (ties in c("efron", "breslow")) {
  for (cv in c("fin", "age", "prio", "race", "wexp"))
    univariate[[length(univariate) + 1]] <- c(dataset = "rossi", cox_uni(rossi, "week", "arrest", cv, ties))
  for (cv in c("bin", "x", "score"))
    univariate[[length(univariate) + 1]] <- c(dataset = "cohort60", cox_uni(cohort, "time", "event", cv, ties))
}

# --------------------------------------------------------------------------- forward stepwise
# An independent implementation of SPSS Forward:LR: entry on the score test of the new
# coefficient at the current fit (coxph with init and iter.max = 0 gives it), removal on LR.
fit_cox <- function(d, time, event, vars, ties, init = NULL) {
  rhs <- if (length(vars)) paste(vars, collapse = " + ") else "1"
  fo <- as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, rhs))
  if (is.null(init)) coxph(fo, data = d, ties = ties, control = coxph.control(eps = 1e-10, iter.max = 100))
  else coxph(fo, data = d, ties = ties, init = init, control = coxph.control(iter.max = 0))
}
loglik_of <- function(f) if (is.null(f$coefficients)) f$loglik[1] else f$loglik[2]
stepwise_r <- function(d, time, event, cands, ties, p_enter = 0.05, p_remove = 0.10) {
  model <- character(0); steps <- list(); step <- 0
  repeat {
    outside <- setdiff(cands, model)
    if (!length(outside)) break
    init0 <- if (length(model)) coef(fit_cox(d, time, event, model, ties)) else numeric(0)
    sc <- sapply(outside, function(v) fit_cox(d, time, event, c(model, v), ties, init = c(init0, 0))$score)
    p <- pchisq(sc, 1, lower.tail = FALSE)
    best <- which.min(p)
    if (p[best] >= p_enter) break
    model <- c(model, outside[best]); step <- step + 1
    steps[[length(steps) + 1]] <- list(step = step, variable = outside[best], action = "enter",
                                       statistic = unname(sc[best]), p = unname(p[best]))
    repeat {
      full <- loglik_of(fit_cox(d, time, event, model, ties))
      lr <- sapply(model, function(v) 2 * (full - loglik_of(fit_cox(d, time, event, setdiff(model, v), ties))))
      lp <- pchisq(lr, 1, lower.tail = FALSE)
      worst <- which.max(lp)
      if (lp[worst] <= p_remove) break
      step <- step + 1
      steps[[length(steps) + 1]] <- list(step = step, variable = model[worst], action = "remove",
                                         statistic = unname(lr[worst]), p = unname(lp[worst]))
      model <- model[-worst]
    }
  }
  final <- fit_cox(d, time, event, model, ties)
  b <- unname(coef(final)); se <- unname(sqrt(diag(vcov(final))))
  list(selected = model, steps = steps,
       final = list(covariate = model, beta = b, se = se, hr = exp(b), ci_lower = exp(b - z * se),
                    ci_upper = exp(b + z * se),
                    p = unname(summary(final)$coefficients[, "Pr(>|z|)"]),
                    concordance = unname(final$concordance["concordance"]),
                    loglik = final$loglik[2]))
}
stepwise <- list(
  c(dataset = "stepwise", ties = "efron",
    stepwise_r(stepdat, "time", "event", c("z", "x2", "x3", "noise"), "efron")),
  c(dataset = "stepwise", ties = "breslow",
    stepwise_r(stepdat, "time", "event", c("z", "x2", "x3", "noise"), "breslow")),
  c(dataset = "rossi", ties = "efron",
    stepwise_r(rossi, "week", "arrest", c("fin", "age", "prio", "race", "wexp"), "efron")),
  c(dataset = "rossi", ties = "breslow",
    stepwise_r(rossi, "week", "arrest", c("fin", "age", "prio", "race", "wexp"), "breslow"))
)

# --------------------------------------------------------------------------- Kaplan-Meier, log-rank
km_summary <- function(d, time, event, group = NULL) {
  fo <- if (is.null(group)) as.formula(sprintf("Surv(%s, %s) ~ 1", time, event))
        else as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, group))
  f <- survfit(fo, data = d)
  tab <- summary(f, rmean = "individual")$table
  if (is.null(dim(tab))) tab <- t(as.matrix(tab))
  labels <- if (is.null(group)) "all" else sub("^.*=", "", rownames(tab))
  out <- list()
  for (i in seq_len(nrow(tab))) {
    out[[i]] <- list(group = labels[i], n = unname(tab[i, "records"]), events = unname(tab[i, "events"]),
                     mean = unname(tab[i, "rmean"]), se = unname(tab[i, "se(rmean)"]),
                     median = unname(tab[i, "median"]), median_ci_lower = unname(tab[i, "0.95LCL"]),
                     median_ci_upper = unname(tab[i, "0.95UCL"]))
  }
  # the survival table of the first (or only) curve, censored rows included
  s <- summary(f, censored = TRUE)
  first <- if (is.null(s$strata)) rep(TRUE, length(s$time)) else s$strata == levels(s$strata)[1]
  curve <- list(time = s$time[first], n_risk = s$n.risk[first], n_event = s$n.event[first],
                survival = s$surv[first], std_err = s$std.err[first],
                ci_lower = s$lower[first], ci_upper = s$upper[first])
  list(summary = out, curve = curve)
}
lr_test <- function(d, time, event, group) {
  s <- survdiff(as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, group)), data = d)
  df <- length(s$n) - 1
  list(statistic = unname(s$chisq), df = df, p = pchisq(s$chisq, df, lower.tail = FALSE),
       observed = unname(s$obs), expected = unname(s$exp))
}
km <- list(
  list(dataset = "rossi", group = "fin", km = km_summary(rossi, "week", "arrest", "fin"),
       logrank = lr_test(rossi, "week", "arrest", "fin")),
  list(dataset = "rossi", group = "race", km = km_summary(rossi, "week", "arrest", "race"),
       logrank = lr_test(rossi, "week", "arrest", "race")),
  list(dataset = "rossi", group = NULL, km = km_summary(rossi, "week", "arrest")),
  list(dataset = "cohort60", group = "bin", km = km_summary(cohort, "time", "event", "bin"),
       logrank = lr_test(cohort, "time", "event", "bin")),
  list(dataset = "cohort60", group = "group", km = km_summary(cohort, "time", "event", "group"),
       logrank = lr_test(cohort, "time", "event", "group")),
  list(dataset = "cohort60", group = NULL, km = km_summary(cohort, "time", "event"))
)

# --------------------------------------------------------------------------- ROC
roc_golden <- function(d, score, positive, label) {
  r <- roc(d[[positive]], d[[score]], levels = c(0, 1), direction = "<", quiet = TRUE)
  ci <- ci.auc(r, method = "delong")
  best <- coords(r, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"),
                 transpose = FALSE)
  # every threshold pROC reports, for the whole curve
  allc <- coords(r, "all", ret = c("threshold", "sensitivity", "specificity"), transpose = FALSE)
  # confusion counts and exact CIs at each Youden-optimal threshold (score > midpoint threshold)
  at <- lapply(seq_len(nrow(best)), function(i) {
    thr <- best$threshold[i]
    pos <- d[[positive]] == 1; call <- d[[score]] > thr
    tp <- sum(call & pos); fp <- sum(call & !pos); tn <- sum(!call & !pos); fn <- sum(!call & pos)
    cp <- function(x, n) unname(binom.test(x, n)$conf.int)
    list(threshold = thr, observed_cutoff = min(d[[score]][call]),
         sensitivity = best$sensitivity[i], specificity = best$specificity[i],
         tp = tp, fp = fp, tn = tn, fn = fn,
         sensitivity_ci = cp(tp, tp + fn), specificity_ci = cp(tn, tn + fp),
         ppv = tp / (tp + fp), ppv_ci = cp(tp, tp + fp), npv = tn / (tn + fn), npv_ci = cp(tn, tn + fn))
  })
  list(dataset = label, score = score, positive = positive, auc = as.numeric(auc(r)),
       auc_ci_lower = ci[1], auc_ci_upper = ci[3], youden = at,
       curve = list(threshold = allc$threshold, sensitivity = allc$sensitivity,
                    specificity = allc$specificity))
}
roc_out <- list(
  roc_golden(cohort, "score", "event", "cohort60"),
  roc_golden(cohort, "x", "bin", "cohort60"),
  roc_golden(rossi, "prio", "arrest", "rossi"),
  roc_golden(rossi, "age", "arrest", "rossi")
)

# --------------------------------------------------------------------------- maxstat
mx <- function(d, time, event, score, label, pmethod) {
  m <- maxstat.test(as.formula(sprintf("Surv(%s, %s) ~ %s", time, event, score)), data = d,
                    smethod = "LogRank", pmethod = pmethod, minprop = 0.1, maxprop = 0.9)
  list(dataset = label, score = score, method = pmethod, cutpoint = unname(m$estimate),
       statistic = unname(m$statistic), p = unname(m$p.value),
       cuts = unname(m$cuts), stats = unname(m$stats))
}
maxstat_out <- list(
  mx(cohort, "time", "event", "score", "cohort60", "Lau92"),
  mx(cohort, "time", "event", "score", "cohort60", "HL"),
  mx(cohort, "time", "event", "x", "cohort60", "Lau92"),
  mx(cohort, "time", "event", "x", "cohort60", "HL"),
  mx(rossi, "week", "arrest", "age", "rossi", "Lau92"),
  mx(rossi, "week", "arrest", "age", "rossi", "HL")
)

golden <- list(
  generated_with = list(R = R.version.string,
                        survival = as.character(packageVersion("survival")),
                        pROC = as.character(packageVersion("pROC")),
                        maxstat = as.character(packageVersion("maxstat"))),
  cox_univariate = univariate, stepwise = stepwise, km = km, roc = roc_out, maxstat = maxstat_out
)
writeLines(toJSON(golden, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           file.path(here, "golden.json"))
cat("wrote", file.path(here, "golden.json"), "\n")
